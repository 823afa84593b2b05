//! The etcd v3 calls a cluster member needs, over etcd's JSON gateway (`POST /v3/...` with
//! JSON bodies, keys and values base64): leases with their keep-alive, puts under a lease,
//! prefix reads with each key's revisions, and transactions that write only while a key is free
//! or still holds the revision the writer claimed it at — the fencing a member needs so that
//! one that lost its lease can never write as the new owner.
//!
//! Hand-written on `ureq` rather than the `etcd-client` crate: that one speaks gRPC and needs
//! `protoc` at build time, and the default build must need no system tools; these eight calls
//! are small. Blocking: the membership loop runs on its own thread.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

/// What went wrong talking to etcd.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// No endpoint answered.
    #[error("etcd unreachable at {endpoints}: {last}; is etcd running there (`[cluster] etcd`)?")]
    Unreachable {
        /// The endpoints tried.
        endpoints: String,
        /// The last one's failure.
        last: String,
    },
    /// etcd answered with an error.
    #[error("etcd at {endpoint} refused {call} ({status}): {body}")]
    Refused {
        /// The endpoint.
        endpoint: String,
        /// The call (`kv/put`).
        call: &'static str,
        /// HTTP status.
        status: u16,
        /// What it said (at most 300 characters).
        body: String,
    },
    /// etcd's answer was not what the call returns.
    #[error("etcd at {endpoint} answered {call} with something unexpected: {what}")]
    BadAnswer {
        /// The endpoint.
        endpoint: String,
        /// The call.
        call: &'static str,
        /// What was wrong.
        what: String,
    },
}

/// One key as etcd holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kv {
    /// The key.
    pub key: String,
    /// The value.
    pub value: Vec<u8>,
    /// The revision that created it (changes when it is deleted and created again): a claim.
    pub create_revision: i64,
    /// The revision of its last change.
    pub mod_revision: i64,
    /// The lease it lives under (0: none).
    pub lease: i64,
}

/// A client of one etcd cluster.
#[derive(Clone)]
pub struct Etcd {
    endpoints: Vec<String>,
    agent: ureq::Agent,
}

/// An int64 from etcd's JSON: a string (as the gateway writes them) or a number; absent is 0
/// (proto3 leaves out zero values).
fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Null => Some(0),
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

fn b64(s: &[u8]) -> String {
    B64.encode(s)
}

/// The key just after every key that starts with `prefix` (etcd's `range_end` for a prefix).
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl Etcd {
    /// A client of the cluster at `endpoints` (`http://host:2379`), each call timing out after
    /// `timeout`.
    pub fn new(endpoints: &[String], timeout: Duration) -> Etcd {
        Etcd {
            endpoints: endpoints.iter().map(|e| e.trim_end_matches('/').to_owned()).collect(),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(timeout))
                .build()
                .into(),
        }
    }

    /// `POST /v3/{call}` to the first endpoint that answers.
    fn call(&self, call: &'static str, body: &Value) -> Result<(String, Value), EtcdError> {
        let mut last = String::from("no endpoint configured");
        for e in &self.endpoints {
            let mut resp = match self.agent.post(&format!("{e}/v3/{call}")).send_json(body) {
                Ok(r) => r,
                Err(err) => {
                    last = format!("{e}: {err}");
                    continue;
                }
            };
            let status = resp.status().as_u16();
            let text = resp
                .body_mut()
                .with_config()
                .limit(64 << 20)
                .read_to_string()
                .unwrap_or_default();
            if status != 200 {
                return Err(EtcdError::Refused {
                    endpoint: e.clone(),
                    call,
                    status,
                    body: text.chars().take(300).collect(),
                });
            }
            // A streaming call (keep-alive) answers one JSON object per line.
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            let v: Value = serde_json::from_str(first).map_err(|err| EtcdError::BadAnswer {
                endpoint: e.clone(),
                call,
                what: format!("not JSON ({err})"),
            })?;
            return Ok((e.clone(), v));
        }
        Err(EtcdError::Unreachable {
            endpoints: self.endpoints.join(", "),
            last,
        })
    }

    fn bad(endpoint: String, call: &'static str, what: &str) -> EtcdError {
        EtcdError::BadAnswer {
            endpoint,
            call,
            what: what.to_owned(),
        }
    }

    /// A lease of `ttl` seconds: its id.
    pub fn grant(&self, ttl: u32) -> Result<i64, EtcdError> {
        let (e, v) = self.call("lease/grant", &json!({ "TTL": ttl }))?;
        int(&v["ID"])
            .filter(|id| *id != 0)
            .ok_or_else(|| Self::bad(e, "lease/grant", "no lease id"))
    }

    /// Keeps lease `id` alive for another TTL: the seconds it now has, or `None` when it has
    /// expired (everything under it is gone; etcd then answers without a TTL).
    pub fn keep_alive(&self, id: i64) -> Result<Option<u32>, EtcdError> {
        let (e, v) = self.call("lease/keepalive", &json!({ "ID": id.to_string() }))?;
        let ttl = int(&v["result"]["TTL"]).ok_or_else(|| Self::bad(e, "lease/keepalive", "no TTL"))?;
        Ok((ttl > 0).then_some(ttl as u32))
    }

    /// Ends lease `id` now: every key under it is deleted.
    pub fn revoke(&self, id: i64) -> Result<(), EtcdError> {
        self.call("lease/revoke", &json!({ "ID": id.to_string() })).map(|_| ())
    }

    /// Writes `key` = `value` under `lease` (0: none): the revision written at.
    pub fn put(&self, key: &str, value: &[u8], lease: i64) -> Result<i64, EtcdError> {
        let (e, v) = self.call(
            "kv/put",
            &json!({ "key": b64(key.as_bytes()), "value": b64(value), "lease": lease.to_string() }),
        )?;
        int(&v["header"]["revision"])
            .filter(|r| *r > 0)
            .ok_or_else(|| Self::bad(e, "kv/put", "no revision"))
    }

    /// Every key starting with `prefix`, in key order.
    pub fn prefix(&self, prefix: &str) -> Result<Vec<Kv>, EtcdError> {
        self.range(&json!({ "key": b64(prefix.as_bytes()), "range_end": b64(&prefix_end(prefix)) }))
    }

    /// The one key `key`, if it exists (a prefix read would also bring every key it begins).
    pub fn get(&self, key: &str) -> Result<Option<Kv>, EtcdError> {
        Ok(self
            .range(&json!({ "key": b64(key.as_bytes()) }))?
            .into_iter()
            .find(|kv| kv.key == key))
    }

    /// The store's revision now: it moves with every put and delete (a lease expiring included),
    /// not with keep-alives, so a reader that saw it unchanged knows that nothing changed and
    /// need not read a large prefix again. One small request (a count over one key).
    pub fn revision(&self) -> Result<i64, EtcdError> {
        let (e, v) = self.call("kv/range", &json!({ "key": b64(b"/"), "count_only": true }))?;
        int(&v["header"]["revision"])
            .filter(|r| *r > 0)
            .ok_or_else(|| Self::bad(e, "kv/range", "no revision"))
    }

    /// `kv/range` with `body`: the keys it answers.
    fn range(&self, body: &Value) -> Result<Vec<Kv>, EtcdError> {
        let (e, v) = self.call("kv/range", body)?;
        let bad = |what: &str| Self::bad(e.clone(), "kv/range", what);
        let Some(kvs) = v["kvs"].as_array() else {
            return Ok(Vec::new());
        };
        kvs.iter()
            .map(|kv| {
                let text = |k: &str| {
                    B64.decode(kv[k].as_str().unwrap_or(""))
                        .map_err(|_| bad(&format!("{k} is not base64")))
                };
                Ok(Kv {
                    key: String::from_utf8(text("key")?).map_err(|_| bad("a key is not UTF-8"))?,
                    value: text("value")?,
                    create_revision: int(&kv["create_revision"]).ok_or_else(|| bad("create_revision"))?,
                    mod_revision: int(&kv["mod_revision"]).ok_or_else(|| bad("mod_revision"))?,
                    lease: int(&kv["lease"]).ok_or_else(|| bad("lease"))?,
                })
            })
            .collect()
    }

    /// Claims `key` for `value` under `lease` if nobody holds it: the claim's revision (the
    /// fencing token), or `None` when it is held.
    pub fn claim(&self, key: &str, value: &[u8], lease: i64) -> Result<Option<i64>, EtcdError> {
        self.put_when(key, value, lease, 0)
    }

    /// Writes `key` only while it is still the claim made at revision `claimed` (its create
    /// revision): the new revision, or `None` when the claim is lost (the key was deleted, by
    /// its lease expiring, and perhaps claimed by someone else).
    pub fn put_if_held(&self, key: &str, value: &[u8], lease: i64, claimed: i64) -> Result<Option<i64>, EtcdError> {
        if claimed <= 0 {
            return Ok(None);
        }
        self.put_when(key, value, lease, claimed)
    }

    fn put_when(&self, key: &str, value: &[u8], lease: i64, create_revision: i64) -> Result<Option<i64>, EtcdError> {
        let put = self.put_compared(key, value, lease, ("CREATE", "create_revision", create_revision))?;
        Ok(put.map(|revision| {
            if create_revision == 0 {
                revision
            } else {
                create_revision
            }
        }))
    }

    /// Writes `key` only if it was last written at revision `seen` (0: only if it does not
    /// exist): the key's new revision, or `None` when someone wrote it since. Shared state that
    /// members change (the directory) goes through this, so that a change made meanwhile
    /// through another member is merged instead of overwritten.
    pub fn put_if_unchanged(&self, key: &str, value: &[u8], seen: i64) -> Result<Option<i64>, EtcdError> {
        self.put_compared(key, value, 0, ("MOD", "mod_revision", seen))
    }

    /// A `kv/txn` that puts `key` (under `lease`, 0 for none) only if its `target` revision
    /// (`CREATE`/`create_revision` or `MOD`/`mod_revision`) equals the one given: the store's
    /// revision after the put, or `None` when the comparison failed.
    fn put_compared(
        &self,
        key: &str,
        value: &[u8],
        lease: i64,
        (target, field, revision): (&str, &str, i64),
    ) -> Result<Option<i64>, EtcdError> {
        let k = b64(key.as_bytes());
        let mut compare = json!({ "key": k, "result": "EQUAL", "target": target });
        compare[field] = json!(revision.to_string());
        let (e, v) = self.call(
            "kv/txn",
            &json!({
                "compare": [compare],
                "success": [{ "request_put": { "key": k, "value": b64(value), "lease": lease.to_string() } }],
            }),
        )?;
        let after = int(&v["header"]["revision"])
            .filter(|r| *r > 0)
            .ok_or_else(|| Self::bad(e, "kv/txn", "no revision"))?;
        // proto3 leaves `succeeded: false` out.
        Ok((v["succeeded"] == true).then_some(after))
    }

    /// Deletes `key` only while it is still the claim made at revision `claimed`: whether it
    /// was (a member releasing a camera never deletes its successor's claim).
    pub fn delete_if_held(&self, key: &str, claimed: i64) -> Result<bool, EtcdError> {
        let k = b64(key.as_bytes());
        let (_, v) = self.call(
            "kv/txn",
            &json!({
                "compare": [{ "key": k, "result": "EQUAL", "target": "CREATE", "create_revision": claimed.to_string() }],
                "success": [{ "request_delete_range": { "key": k } }],
            }),
        )?;
        Ok(claimed > 0 && v["succeeded"] == true)
    }

    /// Deletes `key`.
    pub fn delete(&self, key: &str) -> Result<(), EtcdError> {
        self.call("kv/deleterange", &json!({ "key": b64(key.as_bytes()) }))
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_and_numbers_read_as_etcd_writes_them() {
        assert_eq!(prefix_end("/a/"), b"/a0");
        assert_eq!(prefix_end(""), vec![0]);
        assert_eq!(int(&json!("42")), Some(42));
        assert_eq!(int(&json!(7)), Some(7));
        assert_eq!(int(&Value::Null), Some(0));
        assert_eq!(int(&json!("x")), None);
        assert_eq!(int(&json!([1])), None);
    }

    #[test]
    fn an_unreachable_cluster_says_where_it_looked_and_what_to_check() {
        let e = Etcd::new(&["http://127.0.0.1:1".into()], Duration::from_secs(2))
            .grant(5)
            .unwrap_err()
            .to_string();
        assert!(e.contains("127.0.0.1:1") && e.contains("[cluster] etcd"), "{e}");
    }
}
