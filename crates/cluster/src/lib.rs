//! Several Sharpeye nodes of one level sharing its cameras through etcd (issue 17's first
//! pieces; the node does not use them yet):
//!
//! - [`assign`]: which live member records each camera — weighted rendezvous hashing, sans-IO:
//!   every node computes the same answer from the same membership, a join moves only the
//!   cameras the newcomer wins, a departure only the leaver's;
//! - [`etcd`]: the few etcd v3 calls a member needs (leases, keep-alive, puts under a lease,
//!   prefix reads, claims that succeed only if the key is free or still ours at a revision)
//!   over etcd's JSON gateway, so the default build needs no `protoc` (see
//!   `docs/architecture.md`). A claim's revision is the fencing token: a write conditioned on it
//!   fails once someone else holds the key;
//! - [`claims`]: a member's claims on the cameras it owns, each with the revision it was made
//!   at (the fencing token), planned sans-IO from the view and applied to etcd;
//! - [`membership`]: a member's lease kept alive, its entry under it, and the live members
//!   read back, on a thread of its own; its [`View`] says who owns which camera and whether
//!   this member still holds its lease.

pub mod assign;
pub mod claims;
pub mod etcd;
pub mod gate;
pub mod keys;
pub mod membership;
pub mod peers;

pub use assign::{Member, owner};
pub use etcd::{Etcd, EtcdError, Kv};
pub use gate::{Admit, CameraGate, Gates, LeaseClock};
pub use membership::{LeaseState, MemberInfo, Membership, View};
