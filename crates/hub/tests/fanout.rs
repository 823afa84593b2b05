//! The fan-out with real frames (the camsim 1080p H.264 fixture: 25 fps, a key frame every 25
//! frames): GOP cache, lagging and dead viewers, demand-driven pulls.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use camsim::BuiltinFixture;
use hub::{Action, ChannelLimits, Hub, JoinError, Output, StreamPolicy};
use media::{Frame, StreamId, WallTime};

fn frames(n: usize) -> Vec<Frame> {
    BuiltinFixture::H264_1080p.load().frames(
        &StreamId::main("cam"),
        n,
        0,
        WallTime::from_micros(1_795_420_800_000_000),
    )
}

type Log = Arc<Mutex<Vec<Action>>>;

fn hub(limits: ChannelLimits, pinned: bool, idle: Duration) -> (Arc<Hub>, Log) {
    let log: Log = Arc::default();
    let l = log.clone();
    let hub = Hub::new(
        [(StreamId::main("cam"), StreamPolicy { pinned, idle })],
        limits,
        3,
        Arc::new(move |_s: &StreamId, a| l.lock().unwrap().push(a)),
    );
    (hub, log)
}

fn drain(v: &mut hub::Viewer) -> Vec<Frame> {
    std::iter::from_fn(|| v.try_recv()).collect()
}

#[test]
fn a_new_viewer_starts_on_the_cached_key_frame_and_then_gets_every_frame() {
    let (hub, _) = hub(ChannelLimits::default(), true, Duration::ZERO);
    let ch = hub.channel(&StreamId::main("cam")).unwrap().clone();
    let all = frames(100);
    for f in &all[..37] {
        ch.publish(f);
    }
    let mut v = hub.watch(&StreamId::main("cam"), Output::Other).unwrap();
    for f in &all[37..60] {
        ch.publish(f);
    }
    let got = drain(&mut v);
    // The GOP that started at frame 25, then everything after.
    assert!(got[0].key);
    assert_eq!(got[0].media_time, all[25].media_time);
    let times: Vec<i64> = got.iter().map(|f| f.media_time).collect();
    let want: Vec<i64> = all[25..60].iter().map(|f| f.media_time).collect();
    assert_eq!(times, want);
    assert_eq!(ch.stats().frames_in.load(std::sync::atomic::Ordering::Relaxed), 60);
}

#[test]
fn a_stalled_viewer_never_holds_back_the_others_stays_bounded_and_is_dropped() {
    let limits = ChannelLimits {
        queue_frames: 40,
        dead_after: Duration::from_millis(300),
        ..ChannelLimits::default()
    };
    let (hub, _) = hub(limits, true, Duration::ZERO);
    let ch = hub.channel(&StreamId::main("cam")).unwrap().clone();
    let all = frames(200);
    ch.publish(&all[0]);
    let mut reader = hub.watch(&StreamId::main("cam"), Output::Mp4).unwrap();
    let mut stalled = hub.watch(&StreamId::main("cam"), Output::Rtsp).unwrap();
    let mut got = Vec::new();
    for f in &all[1..] {
        ch.publish(f);
        got.extend(drain(&mut reader));
        std::thread::sleep(Duration::from_millis(4));
    }
    assert_eq!(got.len(), 200, "the reading viewer got every frame");
    let stalled_frames = drain(&mut stalled);
    assert!(stalled_frames.len() <= 40, "bounded queue: {}", stalled_frames.len());
    let stats = ch.stats();
    assert_eq!(stats.dropped_viewers.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert!(stats.skipped_gops.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    assert!(stalled.try_recv().is_none());
    let viewers: usize = ch.viewers().iter().map(|x| x.1).sum();
    assert_eq!(viewers, 1, "only the reader is left");
}

#[test]
fn a_lagging_viewer_skips_to_the_next_key_frame() {
    let limits = ChannelLimits {
        queue_frames: 30,
        dead_after: Duration::from_secs(60),
        ..ChannelLimits::default()
    };
    let (hub, _) = hub(limits, true, Duration::ZERO);
    let ch = hub.channel(&StreamId::main("cam")).unwrap().clone();
    let all = frames(120);
    ch.publish(&all[0]);
    let mut v = hub.watch(&StreamId::main("cam"), Output::Other).unwrap();
    for f in &all[1..40] {
        ch.publish(f);
    }
    let first = drain(&mut v);
    assert_eq!(first.len(), 30, "the queue filled");
    for f in &all[40..80] {
        ch.publish(f);
    }
    let next = drain(&mut v);
    assert!(next[0].key, "resumes on a key frame");
    assert_eq!(next[0].media_time, all[50].media_time);
    assert!(next.windows(2).all(|w| w[1].media_time > w[0].media_time));
}

#[test]
fn the_first_viewer_starts_the_pull_and_it_stops_idle_after_the_last() {
    let (hub, log) = hub(ChannelLimits::default(), false, Duration::from_millis(200));
    let ch = hub.channel(&StreamId::main("cam")).unwrap().clone();
    assert!(log.lock().unwrap().is_empty());
    let a = hub.watch(&StreamId::main("cam"), Output::Mp4).unwrap();
    let b = hub.watch(&StreamId::main("cam"), Output::Rtsp).unwrap();
    let c = hub.watch(&StreamId::main("cam"), Output::Webrtc).unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        vec![Action::Start],
        "one upstream for three viewers"
    );
    assert!(matches!(
        hub.watch(&StreamId::main("cam"), Output::Other),
        Err(JoinError::NodeFull { max: 3 })
    ));
    assert!(matches!(
        hub.watch(&StreamId::main("nope"), Output::Other),
        Err(JoinError::Unknown { .. })
    ));
    drop((a, b, c));
    assert_eq!(hub.viewer_count(), 0);
    ch.tick(std::time::Instant::now());
    assert_eq!(log.lock().unwrap().len(), 1, "still within idle");
    std::thread::sleep(Duration::from_millis(250));
    ch.tick(std::time::Instant::now());
    assert_eq!(*log.lock().unwrap(), vec![Action::Start, Action::Stop]);
    assert!(!ch.upstream_running());
}

#[test]
fn closing_the_viewers_ends_their_subscriptions_and_lets_the_pull_go_idle() {
    let (hub, log) = hub(ChannelLimits::default(), false, Duration::from_millis(100));
    let ch = hub.channel(&StreamId::main("cam")).unwrap().clone();
    let mut a = hub.watch(&StreamId::main("cam"), Output::Mp4).unwrap();
    let b = hub.watch(&StreamId::main("cam"), Output::Rtsp).unwrap();
    let all = frames(30);
    for f in &all[..10] {
        ch.publish(f);
    }
    assert_eq!(ch.close_viewers(), 2);
    assert!(ch.viewers().iter().all(|(_, n)| *n == 0));
    // What was queued is still read, then the subscription ends.
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let got = rt.block_on(async {
        let mut n = 0;
        while a.recv().await.is_some() {
            n += 1;
        }
        n
    });
    assert_eq!(got, 10);
    // No stale GOP is replayed to the next viewer.
    let mut c = hub.watch(&StreamId::main("cam"), Output::Other).unwrap();
    assert!(c.try_recv().is_none());
    drop((b, c));
    std::thread::sleep(Duration::from_millis(150));
    ch.tick(std::time::Instant::now());
    assert_eq!(*log.lock().unwrap(), vec![Action::Start, Action::Stop]);
}
