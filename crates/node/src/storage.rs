//! The node's storage: the data directories, the recorder writing into them, evidence holds and
//! the retention thread that deletes by tier and disk pressure but never a held range.

use std::sync::Arc;

use store::retention::{Retention, RetentionPolicy, SystemClock, Tier};
use store::{Recorder, RecorderConfig, Store};
use tracing::warn;

use crate::NodeError;
use crate::config::Config;
use crate::error::StepContext;

/// Open storage: what `open_storage` starts and `shutdown` stops.
pub struct Storage {
    /// The data directories and their indexes.
    pub store: Arc<Store>,
    /// The recorder (writer and syncer threads).
    pub recorder: Recorder,
    /// Evidence holds.
    pub holds: Arc<store::holds::Holds>,
    /// What retention enforces (the health forecast reports against it).
    pub policy: RetentionPolicy,
    /// The retention thread.
    pub retention: Arc<Retention>,
    /// The pass giving closed segments without a sample table theirs (a migrated directory's).
    pub backfill: store::backfill::Backfill,
}

/// Retention's policy for `config`: the tiers' guarantees, the key-tier cameras and the
/// free-space floor.
pub fn retention_policy(config: &Config) -> RetentionPolicy {
    RetentionPolicy {
        standard: config.retention.standard,
        key: config.retention.key,
        key_cameras: config
            .cameras
            .iter()
            .filter(|c| c.tier == Tier::Key)
            .map(|c| c.id.clone())
            .collect(),
        min_free: config.retention.min_free,
        batch: 5000,
    }
}

impl Storage {
    /// Opens the data directories (recovering from an unclean stop), starts the recorder, loads
    /// the holds and starts retention.
    pub async fn open(config: &Config) -> Result<Storage, NodeError> {
        let dirs = config.server.data_dirs.clone();
        let (store, reports) = tokio::task::spawn_blocking(move || Store::open(&dirs))
            .await
            .step(|| "opening the data directories (server.data_dirs)".into())?
            .step(|| "opening the data directories (server.data_dirs)".into())?;
        for (dir, r) in config.server.data_dirs.iter().zip(&reports) {
            if *r != store::RecoveryReport::default() {
                warn!(dir = %dir.display(), ?r, "recovered from an unclean stop");
            }
        }
        let store = Arc::new(store);
        let recorder = store
            .start_recorder(RecorderConfig {
                segment: config.recording.segment,
                flush_interval: config.recording.flush,
                ..RecorderConfig::default()
            })
            .step(|| "starting the recorder".into())?;
        let holds =
            Arc::new(store::holds::Holds::open(&config.server.data_dirs).step(|| "loading evidence holds".into())?);
        let policy = retention_policy(config);
        let retention = Arc::new(Retention::spawn(
            store.clone(),
            holds.clone(),
            policy.clone(),
            Arc::new(SystemClock),
            config.retention.interval,
        ));
        let backfill = store::backfill::Backfill::spawn(store.clone());
        Ok(Storage {
            store,
            recorder,
            holds,
            policy,
            retention,
            backfill,
        })
    }

    /// Stops retention, then closes every segment and makes it durable and indexed.
    pub async fn close(self) -> Result<(), NodeError> {
        let backfill = self.backfill;
        let _ = tokio::task::spawn_blocking(move || backfill.stop()).await;
        self.retention.stop();
        let recorder = self.recorder;
        tokio::task::spawn_blocking(move || recorder.shutdown())
            .await
            .step(|| "closing the recorder".into())?
            .step(|| "closing the recorder".into())
    }
}
