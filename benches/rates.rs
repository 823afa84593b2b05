//! Rates reports over a year: 10,000 cameras in 300 org units, 365 days of daily rollups
//! written through `rates::Ledger`, then a year's report for a district and for the whole node:
//! in process from the per-org rollups, against the same sums computed camera by camera from
//! the per-camera rollups (the baseline, for a month, scaled), and over HTTP on a release node
//! holding those cameras and that history. Goal: a year's report for 10,000 cameras < 100 ms.
//!
//! ```text
//! cargo bench --bench rates -- [--cameras 10000] [--days 365]
//! ```
//! Run by hand, not in CI.

mod common;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use common::pct;
use rates::{DayTotals, Ledger, Totals};

/// Command-line arguments (`cargo bench --bench rates -- --flag value`).
#[derive(clap::Parser)]
struct Args {
    /// `--cameras`.
    #[arg(long, default_value_t = 10_000)]
    cameras: usize,
    /// `--days`.
    #[arg(long, default_value_t = 365)]
    days: usize,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn org_of(i: usize) -> String {
    format!("city/d{}/s{}", i % 10, i % 300)
}

fn main() {
    let args: Args = clap::Parser::parse();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let ledger = Ledger::open(&data.join("rates"), 8).unwrap();
    let first = jiff::civil::date(2025, 1, 1);
    let t = Instant::now();
    let mut days = Vec::new();
    for d in 0..args.days {
        let day = first.checked_add(jiff::Span::new().days(d as i64)).unwrap().to_string();
        let mut dt = DayTotals {
            day: day.clone(),
            ..DayTotals::default()
        };
        for i in 0..args.cameras {
            let down = ((i * 7 + d * 13) % 100) as f64 * 30.0;
            let mut c = Totals {
                expected_s: 86_400.0,
                online_s: 86_400.0 - down,
                intact_s: 86_400.0 - down * 1.5,
                networked_s: 86_400.0 - down / 2.0,
                expected_recording_s: 86_400.0,
                recording_s: 86_400.0 - down,
                ..Totals::default()
            };
            c.causes.insert("offline".into(), down);
            c.causes.insert("frozen".into(), down / 2.0);
            let org = org_of(i);
            let mut acc = String::new();
            for part in std::iter::once("").chain(org.split('/')) {
                if !part.is_empty() {
                    if !acc.is_empty() {
                        acc.push('/');
                    }
                    acc.push_str(part);
                }
                dt.orgs.entry(acc.clone()).or_default().add(&c);
            }
            dt.cameras.insert(format!("c{i:05}"), c);
        }
        ledger.store_day(&dt).unwrap();
        days.push(day);
    }
    println!(
        "{} days of rollups for {} cameras written in {:.1} s",
        args.days,
        args.cameras,
        t.elapsed().as_secs_f64()
    );
    let (from, to) = (days[0].clone(), days[days.len() - 1].clone());

    let year = |org: &str| -> (f64, Totals) {
        let t = Instant::now();
        let mut total = Totals::default();
        for d in &days {
            if let Some(o) = ledger.org_day(org, d).unwrap() {
                total.add(&o);
            }
        }
        (t.elapsed().as_secs_f64() * 1e3, total)
    };
    let mut district = Vec::new();
    let mut node = Vec::new();
    for _ in 0..10 {
        district.push(year("city/d3").0);
        node.push(year("").0);
    }
    let (_, all) = year("");
    // Baseline: the same sums camera by camera from the per-camera rollups, for 30 days.
    let t = Instant::now();
    let mut base = Totals::default();
    for d in days.iter().take(30) {
        let day = ledger.day(d).unwrap().unwrap();
        for c in day.cameras.values() {
            base.add(c);
        }
    }
    let base_ms = t.elapsed().as_secs_f64() * 1e3 * days.len() as f64 / 30.0;
    println!("\nin process, a year ({} days):", days.len());
    println!(
        "  district city/d3 ({} cameras): p50 {:.1} ms, max {:.1} ms",
        args.cameras / 10,
        pct(district.clone(), 0.5),
        district.iter().copied().fold(0.0, f64::max)
    );
    println!(
        "  whole node ({} cameras):       p50 {:.1} ms, max {:.1} ms",
        args.cameras,
        pct(node.clone(), 0.5),
        node.iter().copied().fold(0.0, f64::max)
    );
    println!(
        "  baseline, camera by camera: {base_ms:.0} ms for the year (30 days measured) = {:.0}x the per-org rollups",
        base_ms / pct(node, 0.5)
    );
    let (online, intact, networked, _) = all.rates();
    println!("  (node-wide rates over the year: online {online:.4}, intact {intact:.4}, networked {networked:.4})");

    // Over HTTP: a release node with these cameras and this history.
    let addr = testkit::free_addr();
    let mut config = format!(
        "[server]\nlisten = \"{addr}\"\ndata_dirs = [\"{}\"]\n\n[[users]]\nname = \"admin\"\npassword = \"bench-password\"\nrole = \"admin\"\n\n",
        data.display()
    );
    for i in 0..args.cameras {
        let _ = write!(
            config,
            "[[cameras]]\nid = \"c{i:05}\"\nurl = \"rtsp://127.0.0.1:9/c{i}\"\nrecord = false\norg = \"{}\"\n\n",
            org_of(i)
        );
    }
    let _node = common::run_node(dir.path(), &config, addr, "warn");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let auth = common::bearer(&agent, addr, "bench-password");
    let http = |q: &str| -> (f64, serde_json::Value) {
        let t = Instant::now();
        let v: serde_json::Value = agent
            .get(&format!("http://{addr}/api/v1/rates?{q}"))
            .header("Authorization", &auth)
            .call()
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap();
        (t.elapsed().as_secs_f64() * 1e3, v)
    };
    let mut ms = Vec::new();
    let mut last = serde_json::Value::Null;
    for _ in 0..10 {
        let (m, v) = http(&format!("org=city/d3&from={from}&to={to}"));
        ms.push(m);
        last = v;
    }
    let mut total_ms = Vec::new();
    for _ in 0..5 {
        total_ms.push(http(&format!("from={from}&to={to}&interval=total")).0);
    }
    println!("\nover HTTP (release node, admin, a year):");
    println!(
        "  org=city/d3, per day ({} days in the answer, {} cameras): p50 {:.1} ms, max {:.1} ms",
        last["days"].as_array().map_or(0, Vec::len),
        last["cameras"],
        pct(ms.clone(), 0.5),
        ms.iter().copied().fold(0.0, f64::max)
    );
    println!(
        "  whole node, interval=total: p50 {:.1} ms, max {:.1} ms",
        pct(total_ms.clone(), 0.5),
        total_ms.iter().copied().fold(0.0, f64::max)
    );
}
