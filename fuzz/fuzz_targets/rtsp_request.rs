//! The RTSP re-serve's request handling: any bytes from a client give requests, "incomplete" or
//! "bad", never a panic, and never a buffer that grows past the request limit; every request's
//! URL, transport and credentials are read without panicking.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rtspd::proto::{self, Parsed};

fuzz_target!(|data: &[u8]| {
    let mut buf = data.to_vec();
    for _ in 0..64 {
        match proto::parse_next(&mut buf) {
            Parsed::Request(req) => {
                let _ = proto::target(req.request_uri());
                let _ = proto::requested_transport(&req);
                let _ = proto::basic_credentials(&req);
            }
            Parsed::Ignored => {}
            Parsed::Incomplete => {
                assert!(buf.len() < proto::MAX_REQUEST || buf.first() == Some(&b'$'));
                break;
            }
            Parsed::Bad => break,
        }
    }
});
