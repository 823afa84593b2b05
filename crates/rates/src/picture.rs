//! Is a decoded picture usable? The field's thresholds on a camera's luma, for what the coded
//! stream cannot tell (a camera that starts dark is learned as usual from its stream alone):
//! - **black** (dark or covered): mean luma under [`DARK_BELOW`];
//! - **overexposed**: mean luma over [`BRIGHT_ABOVE`];
//! - **low contrast** (fog, a dirty or misted cover): standard deviation under [`FLAT_BELOW`];
//! - **blurred** (out of focus): little fine detail for the contrast there is — the variance of
//!   the Laplacian under [`BLUR_BELOW`] × the picture's variance, so a plain scene with sharp
//!   edges passes and a detailed one out of focus does not.
//!
//! Pictures come from decoding a key frame (the `transcode` crate, `gstreamer` feature), scaled
//! to a few hundred pixels wide: enough for these measures, cheap to decode and walk. Frozen
//! pictures are left to the stream's judge (`crate::detect`): an encoder codes a still scene's
//! unchanged blocks as skipped, so two decoded frames of a still street are as alike as two of a
//! frozen camera, while the coded frames of a frozen one are identical or nearly empty.

use crate::Cause;

/// Mean luma (0–255) under which the picture is black.
pub const DARK_BELOW: f64 = 30.0;
/// Mean luma over which it is overexposed.
pub const BRIGHT_ABOVE: f64 = 220.0;
/// Luma standard deviation under which it has too little contrast.
pub const FLAT_BELOW: f64 = 25.0;
/// Laplacian variance ÷ luma variance under which it is blurred (measured on pictures about 320
/// pixels wide: a sharp test scene gives 0.5–3, the same scene out of focus by a few pixels under
/// 0.05).
pub const BLUR_BELOW: f64 = 0.12;
/// Smallest picture measured: under it the measures say little.
pub const MIN_PIXELS: usize = 32 * 32;

/// What is measured of a picture.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct PictureStats {
    /// Mean luma, 0–255.
    pub mean: f64,
    /// Standard deviation of the luma.
    pub sigma: f64,
    /// Variance of the 4-neighbour Laplacian ÷ the luma variance (0 for a flat picture).
    pub detail: f64,
}

impl PictureStats {
    /// The measures of a `width`×`height` 8-bit luma picture, row by row; `None` when the
    /// picture is smaller than [`MIN_PIXELS`] or `gray` does not hold it.
    pub fn of(gray: &[u8], width: usize, height: usize) -> Option<PictureStats> {
        let n = width.checked_mul(height)?;
        if n < MIN_PIXELS || width < 3 || height < 3 || gray.len() < n {
            return None;
        }
        let gray = &gray[..n];
        let (mut sum, mut sq) = (0u64, 0u64);
        for &p in gray {
            sum += u64::from(p);
            sq += u64::from(p) * u64::from(p);
        }
        let mean = sum as f64 / n as f64;
        let var = (sq as f64 / n as f64 - mean * mean).max(0.0);
        let (mut lsum, mut lsq, mut m) = (0i64, 0f64, 0usize);
        for y in 1..height - 1 {
            let row = y * width;
            for x in 1..width - 1 {
                let i = row + x;
                let l = 4 * i64::from(gray[i])
                    - i64::from(gray[i - 1])
                    - i64::from(gray[i + 1])
                    - i64::from(gray[i - width])
                    - i64::from(gray[i + width]);
                lsum += l;
                lsq += (l * l) as f64;
                m += 1;
            }
        }
        let lmean = lsum as f64 / m as f64;
        let lvar = (lsq / m as f64 - lmean * lmean).max(0.0);
        Some(PictureStats {
            mean,
            sigma: var.sqrt(),
            detail: if var > 0.0 { lvar / var } else { 0.0 },
        })
    }

    /// Usable (`None`) or why not, in the order a cause is most useful to whoever goes to fix
    /// it: black, overexposed, low contrast, blurred.
    pub fn fault(&self) -> Option<Cause> {
        if self.mean < DARK_BELOW {
            Some(Cause::Black)
        } else if self.mean > BRIGHT_ABOVE {
            Some(Cause::Overexposed)
        } else if self.sigma < FLAT_BELOW {
            Some(Cause::LowContrast)
        } else if self.detail < BLUR_BELOW {
            Some(Cause::Blurred)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: usize = 320;
    const H: usize = 180;

    /// A scene: a checkerboard of `square`-pixel squares under a gradient, around `level`, with
    /// `spread` of contrast.
    fn squares(square: usize, level: f64, spread: f64) -> Vec<u8> {
        let mut v = Vec::with_capacity(W * H);
        for y in 0..H {
            for x in 0..W {
                let check = if (x / square + y / square).is_multiple_of(2) {
                    1.0
                } else {
                    -1.0
                };
                let ramp = (x as f64 / W as f64) - 0.5;
                v.push((level + spread * (0.7 * check + 0.6 * ramp)).clamp(0.0, 255.0) as u8);
            }
        }
        v
    }

    /// A detailed scene (4-pixel squares).
    fn scene(level: f64, spread: f64) -> Vec<u8> {
        squares(4, level, spread)
    }

    /// A box blur of `r` pixels, applied `passes` times (close to a Gaussian).
    fn blur(src: &[u8], r: usize, passes: usize) -> Vec<u8> {
        let mut a = src.to_vec();
        for _ in 0..passes {
            let mut b = a.clone();
            for y in 0..H {
                for x in 0..W {
                    let (mut s, mut n) = (0u32, 0u32);
                    for dy in y.saturating_sub(r)..(y + r + 1).min(H) {
                        for dx in x.saturating_sub(r)..(x + r + 1).min(W) {
                            s += u32::from(a[dy * W + dx]);
                            n += 1;
                        }
                    }
                    b[y * W + x] = (s / n) as u8;
                }
            }
            a = b;
        }
        a
    }

    #[test]
    fn each_fault_is_told_by_its_threshold_and_a_good_picture_passes() {
        let good = PictureStats::of(&scene(128.0, 80.0), W, H).unwrap();
        assert_eq!(good.fault(), None, "{good:?}");
        for (picture, want) in [
            (scene(12.0, 10.0), Cause::Black),
            (vec![0; W * H], Cause::Black),
            (scene(240.0, 10.0), Cause::Overexposed),
            (scene(128.0, 15.0), Cause::LowContrast),
            (vec![128; W * H], Cause::LowContrast),
            (blur(&squares(16, 128.0, 100.0), 3, 3), Cause::Blurred),
        ] {
            let s = PictureStats::of(&picture, W, H).unwrap();
            assert_eq!(s.fault(), Some(want), "{s:?}");
        }
        // Large plain shapes with sharp edges are not blurred; nor is a slightly soft picture.
        for p in [squares(16, 128.0, 100.0), blur(&scene(128.0, 80.0), 1, 1)] {
            let s = PictureStats::of(&p, W, H).unwrap();
            println!("{s:?}");
            assert_eq!(s.fault(), None, "{s:?}");
        }
    }

    #[test]
    fn pictures_too_small_or_short_of_their_size_are_not_measured() {
        assert_eq!(PictureStats::of(&[], 0, 0), None);
        assert_eq!(PictureStats::of(&[0; 100], 10, 10), None);
        assert_eq!(PictureStats::of(&[0; 100], W, H), None);
        assert_eq!(PictureStats::of(&[0; 4096], usize::MAX, 2), None);
        assert!(PictureStats::of(&[7; 4096], 64, 64).is_some());
    }
}
