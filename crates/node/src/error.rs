//! Why a node could not start or stopped uncleanly: each error says which step failed, on
//! which address, directory or key, so the operator knows what to fix.

/// A node's start-up or shutdown failure.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// An address could not be listened on.
    #[error("cannot listen on {addr} ({key}): is another process using it? ({source})")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// The config key that names it.
        key: &'static str,
        /// The socket error.
        source: std::io::Error,
    },
    /// A step failed: opening storage, loading keys, users or the audit log, serving.
    #[error("{step}: {source}")]
    Step {
        /// What the node was doing, naming the directory or key concerned.
        step: String,
        /// Why it failed.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl NodeError {
    /// A failed `step` (e.g. "opening the audit log /var/lib/sharpeye/audit").
    pub fn step(step: impl Into<String>, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> NodeError {
        NodeError::Step {
            step: step.into(),
            source: source.into(),
        }
    }
}

/// Attaches the step to a failure, as `anyhow::Context` would.
pub(crate) trait StepContext<T> {
    /// On error, the step it failed in.
    fn step(self, step: impl FnOnce() -> String) -> Result<T, NodeError>;
}

impl<T, E: Into<Box<dyn std::error::Error + Send + Sync>>> StepContext<T> for Result<T, E> {
    fn step(self, step: impl FnOnce() -> String) -> Result<T, NodeError> {
        self.map_err(|e| NodeError::step(step(), e))
    }
}
