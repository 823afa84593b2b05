//! The SIP codec: any bytes, as a datagram or the head of a TCP stream, give a message,
//! "incomplete" or an error, never a panic; a parsed message never claims more bytes than it
//! was given, and what it writes back parses to the same start line, headers and body.
#![no_main]
use gb28181::sip::{Framing, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for framing in [Framing::Datagram, Framing::Stream] {
        if let Ok((m, n)) = parse(data, framing) {
            assert!(n <= data.len());
            let bytes = m.to_bytes();
            let (again, used) = parse(&bytes, Framing::Stream).expect("what we write parses");
            assert_eq!(used, bytes.len());
            assert_eq!(again.start, m.start);
            assert_eq!(again.body, m.body);
        }
    }
});
