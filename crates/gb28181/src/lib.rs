//! GB/T 28181 device access: SIP signalling, the registrar, MANSCDP and media sessions, as
//! sans-IO state machines fed bytes and time (DESIGN.md's `gb28181` crate). This first part is
//! the SIP message codec; the rest follows the build order of `gb28181-notes.md` §10.

pub mod sip;
