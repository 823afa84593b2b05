//! Places at a city's scale: 25,000 cameras, queries by radius, polygon and field of view.
//!
//! In process: the spatial index (`places::CameraIndex`) against a brute-force scan of the
//! same cameras in the same run. Over HTTP: `GET /api/v1/cameras?near=|polygon=|sees=` on a
//! real node (release build) holding those cameras, against `/healthz` on the same node in
//! the same run (the HTTP floor). Goal: spatial p99 < 2 ms.
//!
//! ```text
//! cargo bench --bench places -- [--cameras 25000] [--queries 3000]
//! ```
//! Run by hand, not in CI.

mod common;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use common::pct;
use places::{CameraIndex, Placed, Point, Polygon, View};

/// Command-line arguments (`cargo bench --bench places -- --flag value`).
#[derive(clap::Parser)]
struct Args {
    /// `--cameras`.
    #[arg(long, default_value_t = 25_000)]
    cameras: usize,
    /// `--queries` per kind.
    #[arg(long, default_value_t = 3_000)]
    queries: usize,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    fn point(&mut self) -> Point {
        Point {
            lat: 38.85 + self.next() * 0.15,
            lon: 121.50 + self.next() * 0.20,
        }
    }
}

fn quad(rng: &mut Lcg, at: Point) -> Polygon {
    let exterior = (0..4)
        .map(|j| {
            let a = std::f64::consts::FRAC_PI_2 * j as f64 + rng.next();
            let r = 0.001 + rng.next() * 0.004;
            Point {
                lat: at.lat + r * a.sin(),
                lon: at.lon + r * a.cos(),
            }
        })
        .collect();
    Polygon {
        exterior,
        holes: vec![],
    }
}

fn line(name: &str, ms: Vec<f64>) -> String {
    format!(
        "{name:<34} p50 {:>8.4} ms  p99 {:>8.4} ms  max {:>8.4} ms",
        pct(ms.clone(), 0.5),
        pct(ms.clone(), 0.99),
        ms.iter().copied().fold(0.0, f64::max)
    )
}

fn main() {
    let args: Args = clap::Parser::parse();
    let mut rng = Lcg(42);
    let cameras: Vec<Placed> = (0..args.cameras)
        .map(|i| Placed {
            id: format!("c{i:05}"),
            at: rng.point(),
            view: (i % 3 != 0).then(|| {
                View::new(
                    rng.next() * 360.0,
                    30.0 + rng.next() * 90.0,
                    Some(40.0 + rng.next() * 160.0),
                )
                .unwrap()
            }),
        })
        .collect();
    let t = Instant::now();
    let index = CameraIndex::build(cameras.clone());
    println!(
        "index of {} cameras built in {:.1} ms",
        cameras.len(),
        t.elapsed().as_secs_f64() * 1e3
    );

    // In process: each kind, index against brute force.
    let mut time = |f: &mut dyn FnMut(&mut Lcg) -> usize, n: usize| -> (Vec<f64>, usize) {
        let mut ms = Vec::with_capacity(n);
        let mut found = 0;
        for _ in 0..n {
            let t = Instant::now();
            found += f(&mut rng);
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        (ms, found)
    };
    let brute_n = (args.queries / 10).max(50);
    let (near, nf) = time(&mut |r| index.near(r.point(), 300.0).len(), args.queries);
    let (near_b, _) = time(
        &mut |r| {
            let p = r.point();
            cameras
                .iter()
                .filter(|c| places::geo::distance_m(p, c.at) <= 300.0)
                .count()
        },
        brute_n,
    );
    let (poly, pf) = time(
        &mut |r| {
            let p = r.point();
            index.within(&[quad(r, p)]).len()
        },
        args.queries,
    );
    let (poly_b, _) = time(
        &mut |r| {
            let p = r.point();
            let q = quad(r, p);
            cameras.iter().filter(|c| q.contains(c.at)).count()
        },
        brute_n,
    );
    let (sees, sf) = time(&mut |r| index.seeing(r.point()).len(), args.queries);
    let (sees_b, _) = time(
        &mut |r| {
            let p = r.point();
            cameras
                .iter()
                .filter(|c| c.view.is_some_and(|v| v.sees(c.at, p)))
                .count()
        },
        brute_n,
    );
    let n = args.queries as f64;
    println!("\nin process ({} queries each; brute force {brute_n}):", args.queries);
    for (name, ms, b, found) in [
        ("near 300 m", near, near_b, nf),
        ("polygon ~400 m", poly, poly_b, pf),
        ("sees", sees, sees_b, sf),
    ] {
        let ratio = pct(b.clone(), 0.5) / pct(ms.clone(), 0.5);
        println!(
            "{}  ({:.1} cameras/answer; brute force p50 {:.3} ms = {ratio:.0}x)",
            line(name, ms),
            found as f64 / n,
            pct(b, 0.5)
        );
    }

    // Over HTTP on a real node.
    let dir = tempfile::tempdir().unwrap();
    let addr = testkit::free_addr();
    let mut config = format!(
        "[server]\nlisten = \"{addr}\"\ndata_dirs = [\"{}\"]\n\n[[users]]\nname = \"admin\"\npassword = \"bench-password\"\nrole = \"admin\"\n\n",
        dir.path().join("data").display()
    );
    for c in &cameras {
        let _ = write!(
            config,
            "[[cameras]]\nid = \"{}\"\nurl = \"rtsp://127.0.0.1:9/{}\"\nrecord = false\nlocation = {{ lat = {}, lon = {}",
            c.id, c.id, c.at.lat, c.at.lon
        );
        if let Some(v) = c.view {
            let _ = write!(
                config,
                ", heading = {}, fov = {}, range_m = {}",
                v.heading, v.fov, v.range_m
            );
        }
        config.push_str(" }\n\n");
    }
    let t = Instant::now();
    let _node = common::run_node(dir.path(), &config, addr, "warn");
    println!(
        "\na node with {} cameras answered after {:.1} s",
        cameras.len(),
        t.elapsed().as_secs_f64()
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let auth = common::bearer(&agent, addr, "bench-password");
    let mut http = |q: &dyn Fn(&mut Lcg) -> String, n: usize| -> Vec<f64> {
        (0..n)
            .map(|_| {
                let url = format!("http://{addr}{}", q(&mut rng));
                let t = Instant::now();
                let mut resp = agent.get(&url).header("Authorization", &auth).call().unwrap();
                let _ = resp.body_mut().read_to_vec().unwrap();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect()
    };
    let hn = (args.queries / 3).max(100);
    let floor = http(&|_| "/healthz".to_owned(), hn);
    let near = http(
        &|r| {
            let p = r.point();
            format!("/api/v1/cameras?near={},{}&radius=300", p.lat, p.lon)
        },
        hn,
    );
    let poly = http(
        &|r| {
            let p = r.point();
            let q: Vec<String> = quad(r, p)
                .exterior
                .iter()
                .map(|v| format!("{},{}", v.lat, v.lon))
                .collect();
            format!("/api/v1/cameras?polygon={}", q.join(";"))
        },
        hn,
    );
    let sees = http(
        &|r| {
            let p = r.point();
            format!("/api/v1/cameras?sees={},{}", p.lat, p.lon)
        },
        hn,
    );
    println!("over HTTP ({hn} sequential queries each, keep-alive, release build):");
    println!("{}", line("GET /healthz (floor)", floor));
    println!("{}", line("GET /api/v1/cameras?near=..", near));
    println!("{}", line("GET /api/v1/cameras?polygon=..", poly));
    println!("{}", line("GET /api/v1/cameras?sees=..", sees));
}
