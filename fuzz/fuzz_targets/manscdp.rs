//! MANSCDP bodies: any bytes, read with each charset, give a document or an error, never a
//! panic, and a document's Catalog and RecordInfo views read without panicking either.
#![no_main]
use gb28181::manscdp::{CatalogChunk, Charset, Document, RecordChunk};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for charset in [Charset::Auto, Charset::Gb18030, Charset::Utf8] {
        if let Ok(doc) = Document::decode(data, charset) {
            let catalog = CatalogChunk::from_document(&doc);
            for item in &catalog.items {
                let _ = item.is_video_channel();
            }
            let _ = RecordChunk::from_document(&doc);
            let _ = doc.is("Response", "Catalog");
        }
    }
});
