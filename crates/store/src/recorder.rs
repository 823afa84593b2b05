//! The recorder: frames in, segment files and index entries out.
//!
//! Threads (see `docs/storage.md` for the durability order):
//!
//! * one **writer** thread ([`crate::segmenter`]) owns every open segment, appending GOPs as
//!   fragments and rotating segments;
//! * one **syncer** thread per data directory ([`crate::syncer`]) makes changed segments durable
//!   and only then commits their index entries.
//!
//! Frames reach the writer through a bounded queue; when it is full, `try_push` hands the frame
//! back so the caller can mark a discontinuity, and recording restarts at the next key frame.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::thread::JoinHandle;

use media::{Frame, StreamId, WallTime};

use crate::StoreError;
use crate::disk::Disk;
use crate::recorder_stats::{RecorderStats, inc};
use crate::retention::Trigger;
use crate::segmenter::{Cmd, RecorderConfig, Segmenter};
use crate::syncer::run_syncer;

/// Handle to the running recorder. Cloning gives another handle to the same recorder.
#[derive(Clone)]
pub struct Recorder {
    tx: SyncSender<Cmd>,
    stats: Arc<RecorderStats>,
    threads: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
}

impl Recorder {
    /// Starts the writer and syncer threads over `disks`; `next_seq` gives each known stream's
    /// highest sequence number so far, `last_end` the wall time and decode time its last
    /// segment ended at (where its timeline continues).
    pub(crate) fn start(
        disks: Vec<Arc<Disk>>,
        cfg: RecorderConfig,
        next_seq: HashMap<StreamId, u64>,
        last_end: HashMap<StreamId, (WallTime, u64)>,
        trigger: Arc<Trigger>,
    ) -> Recorder {
        let stats = Arc::new(RecorderStats::default());
        let (tx, rx) = mpsc::sync_channel(cfg.queue_frames.max(1));
        let mut threads = Vec::new();
        let mut syncers = Vec::new();
        for (i, disk) in disks.iter().enumerate() {
            let (stx, srx) = mpsc::channel();
            syncers.push(stx);
            let (disk, stats) = (disk.clone(), stats.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("syncer-{i}"))
                    .spawn(move || run_syncer(&disk, srx, &stats))
                    .expect("spawning a thread"),
            );
        }
        let writer = Segmenter {
            disks,
            cfg,
            syncers,
            streams: HashMap::new(),
            next_seq,
            last_end,
            trigger,
            no_disk_logged: None,
            stats: stats.clone(),
        };
        threads.push(
            std::thread::Builder::new()
                .name("segment-writer".into())
                .spawn(move || writer.run(rx))
                .expect("spawning a thread"),
        );
        Recorder {
            tx,
            stats,
            threads: Arc::new(std::sync::Mutex::new(threads)),
        }
    }

    /// Queues a frame without blocking. A full queue (the disks cannot keep up) hands the frame
    /// back: the caller should mark its next frame as a discontinuity.
    pub fn try_push(&self, frame: Frame) -> Result<(), Frame> {
        match self.tx.try_send(Cmd::Frame(frame)) {
            Ok(()) => {
                inc(&self.stats.frames_queued, 1);
                Ok(())
            }
            Err(TrySendError::Full(Cmd::Frame(f)) | TrySendError::Disconnected(Cmd::Frame(f))) => {
                inc(&self.stats.frames_refused, 1);
                Err(f)
            }
            Err(_) => Ok(()),
        }
    }

    /// The stream's source ended: finish its segment now.
    pub fn end_stream(&self, stream: &StreamId) {
        // Blocking here is fine: it happens once per session, from the source's task.
        let _ = self.tx.send(Cmd::End(stream.clone()));
    }

    /// Counters.
    pub fn stats(&self) -> &Arc<RecorderStats> {
        &self.stats
    }

    /// Closes every segment, makes everything durable and indexed, and stops the threads.
    pub fn shutdown(&self) -> Result<(), StoreError> {
        let (done_tx, done_rx) = mpsc::channel();
        self.tx.send(Cmd::Shutdown(done_tx)).map_err(|_| StoreError::Stopped)?;
        done_rx.recv().map_err(|_| StoreError::Stopped)?;
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            let _ = t.join();
        }
        Ok(())
    }
}
