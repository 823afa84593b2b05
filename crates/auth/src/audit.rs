//! TEMPORARY stub with the audit log's interface; replaced by the real module.
#![allow(missing_docs, dead_code, clippy::all)]
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    pub actor: String,
    pub ip: Option<String>,
    pub action: String,
    pub outcome: String,
    pub camera: Option<String>,
    pub target: Option<String>,
    pub reason: Option<String>,
    pub detail: serde_json::Value,
}
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    pub seq: u64,
}
#[derive(Default)]
pub struct Filter {
    pub start_us: Option<i64>,
    pub end_us: Option<i64>,
    pub actor: Option<String>,
    pub camera: Option<String>,
    pub action: Option<String>,
    pub after_seq: Option<u64>,
}
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("x")]
    X,
}
#[derive(Default)]
pub struct AuditConfig;
#[derive(Debug)]
pub struct AuditLog(PathBuf);
impl AuditLog {
    pub fn open(dir: &Path, _c: AuditConfig) -> Result<AuditLog, AuditError> {
        Ok(AuditLog(dir.into()))
    }
    pub fn append(&self, _e: Event) -> impl Future<Output = Result<u64, AuditError>> + Send + 'static {
        async { Ok(1) }
    }
    pub fn record(&self, _e: Event) {}
    pub fn dir(&self) -> &Path {
        &self.0
    }
}
pub fn query(_d: &Path, _f: &Filter, _l: usize) -> Result<(Vec<Record>, bool), AuditError> {
    Ok((vec![], false))
}
pub struct VerifyReport;
impl std::fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("x")
    }
}
pub fn verify(_d: &Path) -> Result<VerifyReport, AuditError> {
    Ok(VerifyReport)
}
