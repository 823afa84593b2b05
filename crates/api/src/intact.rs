//! Whether each of the node's cameras has usable video: its [`Judge`], fed every frame of its
//! main stream by the node's sink (`rates::IntactDetector`, no decoding), and — where the node
//! can decode (`gstreamer` feature) — [`spawn_picture_checks`], which now and then decodes the
//! newest key frame of each camera and applies the field's thresholds on the picture
//! (`rates::picture`: dark, overexposed, low contrast, blurred).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use media::{Frame, WallTime};
use rates::{Cause, FrameInfo, IntactDetector, PictureStats};

use crate::state::AppState;

/// One camera's judge.
#[derive(Debug, Default)]
pub struct Judge {
    detector: Mutex<IntactDetector>,
    /// The newest key frame, kept only where pictures are checked (its bytes are shared with
    /// the frame's other holders: no copy).
    key: Mutex<Option<Frame>>,
    /// When its picture was last measured (µs since the epoch; 0: never).
    checked_us: AtomicI64,
}

impl Judge {
    /// Takes a frame of the camera's main stream.
    pub fn frame(&self, f: &Frame) {
        let info = FrameInfo::of(f.wall_time.as_micros(), f.key, &f.data);
        self.detector.lock().unwrap_or_else(|p| p.into_inner()).push(info);
        if f.key && transcode::AVAILABLE {
            *self.key.lock().unwrap_or_else(|p| p.into_inner()) = Some(f.clone());
        }
    }

    /// The verdict once a second ([`IntactDetector::judge`]), with what it judged from for logs.
    pub fn judge(&self, now: WallTime) -> (Result<(), Cause>, String) {
        let mut d = self.detector.lock().unwrap_or_else(|p| p.into_inner());
        let verdict = d.judge(now.as_micros());
        (verdict, d.summary())
    }

    /// The verdict now, changing nothing.
    pub fn verdict(&self, now: WallTime) -> Result<(), Cause> {
        self.detector
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .verdict(now.as_micros())
    }

    /// The newest key frame, when the picture is due a check (not measured for `every`) and the
    /// frame is from within that time (an older one is not the camera's picture now).
    fn due(&self, now: WallTime, every: Duration) -> Option<Frame> {
        let every_us = every.as_micros() as i64;
        if now.as_micros() - self.checked_us.load(Ordering::Relaxed) < every_us {
            return None;
        }
        let key = self.key.lock().unwrap_or_else(|p| p.into_inner()).clone()?;
        (now.micros_since(key.wall_time) < every_us).then_some(key)
    }

    /// Records a measured picture's verdict, standing for three checks' time.
    fn measured(&self, now: WallTime, fault: Option<Cause>, every: Duration) {
        self.checked_us.store(now.as_micros(), Ordering::Relaxed);
        let until = now.as_micros() + 3 * every.as_micros() as i64;
        self.detector
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .set_picture(fault, until);
    }
}

/// Measures the picture of every camera with a recent key frame once per `every`, one decode
/// at a time and resting as long as each decode took: the checks take at most half of one core
/// whatever the number of cameras (at 1,000 cameras they then come round less often than
/// `every`, and say so in the log). Only where pictures can be decoded; else it returns at once.
pub fn spawn_picture_checks(state: Arc<AppState>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if !transcode::AVAILABLE {
            return;
        }
        let mut late_said = false;
        loop {
            let round = std::time::Instant::now();
            let judges = state.rates.judges();
            for (camera, judge) in judges {
                let now = WallTime::now();
                let Some(key) = judge.due(now, every) else { continue };
                let started = std::time::Instant::now();
                let measured = tokio::task::spawn_blocking(move || {
                    transcode::snapshot::luma(&key, transcode::snapshot::LUMA_WIDTH)
                        .map(|l| PictureStats::of(&l.pixels, l.width as usize, l.height as usize))
                })
                .await;
                match measured {
                    Ok(Ok(Some(stats))) => {
                        let fault = stats.fault();
                        tracing::debug!(camera = %camera, ?stats, ?fault, "picture measured");
                        judge.measured(now, fault, every);
                    }
                    Ok(Ok(None)) => judge.measured(now, None, every),
                    Ok(Err(e)) => {
                        tracing::warn!(camera = %camera, "camera {camera}: its key frame could not be decoded to check its picture: {e}");
                        judge.measured(now, None, every);
                    }
                    Err(e) => tracing::error!(camera = %camera, %e, "picture check failed"),
                }
                tokio::time::sleep(started.elapsed()).await;
            }
            let took = round.elapsed();
            if took > every && !late_said {
                late_said = true;
                tracing::warn!(
                    "picture checks take {took:?} a round, longer than [rates] picture_every = {every:?}: each camera's picture is checked less often"
                );
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}
