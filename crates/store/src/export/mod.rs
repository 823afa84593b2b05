//! Evidence export packages: MP4 file(s), `manifest.json` and its Ed25519 signature, in one zip.
//!
//! ```text
//! <camera>_<start>.zip            (stored, not compressed: video does not compress)
//!   <camera>_<start>_1.mp4        standard progressive MP4 (more files after a codec switch)
//!   manifest.json                 camera, ranges, gaps, per-file SHA-256 and size, who and why,
//!                                 the node's public key
//!   manifest.sig                  base64 Ed25519 signature over the exact bytes of manifest.json
//! ```
//!
//! [`verify`] checks a package offline (the zip, or a folder it was extracted to): the
//! signature, then every file's size and SHA-256, and that nothing is missing or added. It can
//! pin the node's key, so re-signing a forged manifest with another key is caught too.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use media::progressive::VirtualMp4;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::StoreError;

mod copy;

/// The manifest file's name inside a package.
pub const MANIFEST: &str = "manifest.json";
/// The signature file's name inside a package.
pub const SIGNATURE: &str = "manifest.sig";
/// `format` of a manifest.
pub const FORMAT: &str = "sharpeye-export";

const MAX_MANIFEST: u64 = 16 << 20;

/// The node's signing key, kept in the data directory with mode 0600.
pub struct NodeKey(SigningKey);

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeKey({})", self.key_id())
    }
}

impl NodeKey {
    /// Loads the key at `path`, generating one at first start.
    pub fn load_or_create(path: &Path) -> Result<NodeKey, StoreError> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let seed: [u8; 32] = bytes.try_into().map_err(|_| StoreError::Segment {
                    path: path.to_owned(),
                    detail: "not a 32-byte Ed25519 seed".into(),
                })?;
                Ok(NodeKey(SigningKey::from_bytes(&seed)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut seed = [0u8; 32];
                rand::fill(&mut seed);
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(StoreError::io(path, "create"))?;
                f.write_all(&seed)
                    .and_then(|()| f.sync_all())
                    .map_err(StoreError::io(path, "write"))?;
                Ok(NodeKey(SigningKey::from_bytes(&seed)))
            }
            Err(e) => Err(StoreError::io(path, "read")(e)),
        }
    }

    /// The public key, base64.
    pub fn public_key(&self) -> String {
        B64.encode(self.0.verifying_key().as_bytes())
    }

    /// A short id of the public key: the first 8 bytes of its SHA-256, hex.
    pub fn key_id(&self) -> String {
        key_id(self.0.verifying_key().as_bytes())
    }

    /// A base64 Ed25519 signature of `msg` (manifests, audit heads).
    pub fn sign(&self, msg: &[u8]) -> String {
        B64.encode(self.0.sign(msg).to_bytes())
    }
}

fn key_id(public: &[u8]) -> String {
    Sha256::digest(public)[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// A time range as RFC 3339 strings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    /// Start.
    pub start: String,
    /// End.
    pub end: String,
}

/// One media file of a package.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// File name inside the package.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, lower-case hex.
    pub sha256: String,
    /// What it shows.
    pub span: Span,
    /// Frames in it.
    pub frames: u64,
}

/// The camera of a package.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestCamera {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
}

/// The signing node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestNode {
    /// Ed25519 public key, base64.
    pub public_key: String,
    /// Its short id.
    pub key_id: String,
    /// Software and version.
    pub software: String,
}

/// `manifest.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// 1.
    pub version: u32,
    /// Export id.
    pub id: String,
    /// When it was made.
    pub created: String,
    /// Camera.
    pub camera: ManifestCamera,
    /// `main` or `sub`.
    pub stream: String,
    /// The range asked for.
    pub requested: Span,
    /// First frame shown to end of the last: what the files actually cover.
    pub actual: Span,
    /// Stretches inside the range with no recording.
    pub gaps: Vec<Span>,
    /// The media files.
    pub files: Vec<ManifestFile>,
    /// Who exported it.
    pub exported_by: String,
    /// Why.
    pub reason: String,
    /// The signing node.
    pub node: ManifestNode,
    /// The cluster members whose recordings are in the files (empty for a node alone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_nodes: Vec<String>,
}

/// One media file to put in a package: its name, layout and sources.
pub struct PackageFile<'a> {
    /// Name inside the package.
    pub name: String,
    /// Layout.
    pub file: &'a VirtualMp4,
    /// Source files of its parts.
    pub sources: &'a [PathBuf],
    /// What it shows.
    pub span: Span,
}

/// Writes a package to `path` (through `path.partial`, renamed when complete and synced).
/// `progress(bytes)` is called as media bytes are copied. Returns the manifest written.
pub fn write_package(
    path: &Path,
    files: &[PackageFile<'_>],
    mut manifest: Manifest,
    key: &NodeKey,
    mut progress: impl FnMut(u64),
) -> Result<Manifest, StoreError> {
    let partial = path.with_extension("zip.partial");
    let out = File::create(&partial).map_err(StoreError::io(&partial, "create"))?;
    let mut writeback = copy::Writeback::new(&out);
    let mut progress = |n| {
        writeback.wrote(n);
        progress(n)
    };
    let mut zip = zip::ZipWriter::new(io::BufWriter::with_capacity(64 << 10, out));
    let zerr = |e: zip::result::ZipError| StoreError::Io {
        path: partial.clone(),
        op: "write zip",
        source: io::Error::other(e),
    };
    let opts = |len: u64| {
        zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(len >= u64::from(u32::MAX))
            .unix_permissions(0o644)
    };
    manifest.files.clear();
    for f in files {
        zip.start_file(f.name.as_str(), opts(f.file.len)).map_err(zerr)?;
        let digest = copy::copy_hashed(f, &mut zip, &partial, &mut progress)?;
        manifest.files.push(ManifestFile {
            name: f.name.clone(),
            size: f.file.len,
            sha256: digest,
            span: f.span.clone(),
            frames: f.file.samples,
        });
    }
    manifest.node = ManifestNode {
        public_key: key.public_key(),
        key_id: key.key_id(),
        software: concat!("sharpeye ", env!("CARGO_PKG_VERSION")).into(),
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| StoreError::Segment {
        path: partial.clone(),
        detail: e.to_string(),
    })?;
    let sig = key.sign(&json);
    zip.start_file(MANIFEST, opts(json.len() as u64)).map_err(zerr)?;
    zip.write_all(&json).map_err(StoreError::io(&partial, "write"))?;
    zip.start_file(SIGNATURE, opts(sig.len() as u64)).map_err(zerr)?;
    zip.write_all(sig.as_bytes())
        .map_err(StoreError::io(&partial, "write"))?;
    let w = zip.finish().map_err(zerr)?;
    let file = w
        .into_inner()
        .map_err(|e| StoreError::io(&partial, "flush")(e.into_error()))?;
    file.sync_all().map_err(StoreError::io(&partial, "sync"))?;
    std::fs::rename(&partial, path).map_err(StoreError::io(path, "rename"))?;
    Ok(manifest)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A package's entries, from a zip or a folder.
trait Package {
    fn names(&self) -> Vec<String>;
    fn read_all(&mut self, name: &str) -> Option<io::Result<Vec<u8>>>;
    /// (size, SHA-256) of an entry.
    fn digest(&mut self, name: &str) -> Option<io::Result<(u64, String)>>;
}

fn digest_reader(mut r: impl Read) -> io::Result<(u64, String)> {
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = r.read(&mut buf)?;
        if k == 0 {
            return Ok((n, hex(&sha.finalize())));
        }
        sha.update(&buf[..k]);
        n += k as u64;
    }
}

struct Folder(PathBuf);

impl Package for Folder {
    fn names(&self) -> Vec<String> {
        std::fs::read_dir(&self.0)
            .map(|rd| rd.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
            .unwrap_or_default()
    }
    fn read_all(&mut self, name: &str) -> Option<io::Result<Vec<u8>>> {
        let p = self.0.join(name);
        p.exists().then(|| std::fs::read(p))
    }
    fn digest(&mut self, name: &str) -> Option<io::Result<(u64, String)>> {
        let p = self.0.join(name);
        p.exists().then(|| File::open(p).and_then(digest_reader))
    }
}

struct Zip<R: Read + Seek>(zip::ZipArchive<R>);

impl<R: Read + Seek> Package for Zip<R> {
    fn names(&self) -> Vec<String> {
        self.0
            .file_names()
            .filter_map(|n| n.ok().map(|n| n.into_owned()))
            .collect()
    }
    fn read_all(&mut self, name: &str) -> Option<io::Result<Vec<u8>>> {
        let f = self.0.by_name(name).ok()?;
        let mut v = Vec::new();
        // Manifests are kilobytes; a huge entry is hostile, not a manifest.
        Some(f.take(MAX_MANIFEST).read_to_end(&mut v).map(|_| v))
    }
    fn digest(&mut self, name: &str) -> Option<io::Result<(u64, String)>> {
        let f = self.0.by_name(name).ok()?;
        Some(digest_reader(f))
    }
}

/// The outcome of verifying a package.
#[derive(Debug)]
pub struct Verification {
    /// The manifest, if it could be read.
    pub manifest: Option<Manifest>,
    /// Everything wrong, each naming the file or field; empty means intact.
    pub problems: Vec<String>,
}

/// Verifies the package at `path` (a zip, or a folder holding its files). With `trusted_key`
/// (base64), the manifest must also be signed by that key.
pub fn verify(path: &Path, trusted_key: Option<&str>) -> Verification {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            return Verification {
                manifest: None,
                problems: vec![format!("{}: {e}", path.display())],
            };
        }
    };
    if meta.is_dir() {
        verify_package(&mut Folder(path.to_owned()), trusted_key)
    } else {
        match File::open(path)
            .map_err(|e| e.to_string())
            .and_then(|f| zip::ZipArchive::new(io::BufReader::new(f)).map_err(|e| format!("not a zip package: {e}")))
        {
            Ok(z) => verify_package(&mut Zip(z), trusted_key),
            Err(e) => Verification {
                manifest: None,
                problems: vec![format!("{}: {e}", path.display())],
            },
        }
    }
}

fn verify_package(pkg: &mut dyn Package, trusted_key: Option<&str>) -> Verification {
    let mut problems = Vec::new();
    let fail = |problems: Vec<String>| Verification {
        manifest: None,
        problems,
    };
    let json = match pkg.read_all(MANIFEST) {
        None => return fail(vec![format!("{MANIFEST} is missing")]),
        Some(Err(e)) => return fail(vec![format!("{MANIFEST}: cannot read: {e}")]),
        Some(Ok(j)) => j,
    };
    let manifest: Manifest = match serde_json::from_slice(&json) {
        Ok(m) => m,
        Err(e) => return fail(vec![format!("{MANIFEST} is not a valid manifest: {e}")]),
    };
    if manifest.format != FORMAT || manifest.version != 1 {
        problems.push(format!(
            "{MANIFEST}: unknown format {} version {}",
            manifest.format, manifest.version
        ));
    }
    // The signature.
    let key = B64
        .decode(&manifest.node.public_key)
        .ok()
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
        .and_then(|k| VerifyingKey::from_bytes(&k).ok());
    match (&key, pkg.read_all(SIGNATURE)) {
        (None, _) => problems.push(format!("{MANIFEST}: node.public_key is not an Ed25519 public key")),
        (_, None) => problems.push(format!("{SIGNATURE} is missing: the manifest is not signed")),
        (_, Some(Err(e))) => problems.push(format!("{SIGNATURE}: cannot read: {e}")),
        (Some(k), Some(Ok(sig))) => {
            let sig = B64
                .decode(String::from_utf8_lossy(&sig).trim())
                .ok()
                .and_then(|s| <[u8; 64]>::try_from(s).ok())
                .map(|s| Signature::from_bytes(&s));
            match sig {
                None => problems.push(format!("{SIGNATURE} is not an Ed25519 signature")),
                Some(s) if k.verify(&json, &s).is_err() => problems.push(format!(
                    "signature does not match {MANIFEST}: the manifest was changed after signing, or the key in it is not the one that signed it"
                )),
                Some(_) => {}
            }
        }
    }
    if let Some(trusted) = trusted_key {
        let trusted = trusted.trim();
        if trusted != manifest.node.public_key {
            let tid = B64
                .decode(trusted)
                .map(|k| key_id(&k))
                .unwrap_or_else(|_| "unparseable".into());
            problems.push(format!(
                "the package is signed by key {} ({}), not by the trusted key {tid}",
                manifest.node.key_id, manifest.node.public_key
            ));
        }
    }
    if manifest.node.key_id != key.map(|k| key_id(k.as_bytes())).unwrap_or_default() {
        problems.push(format!("{MANIFEST}: node.key_id does not match node.public_key"));
    }
    // The files.
    let listed: BTreeMap<&str, &ManifestFile> = manifest.files.iter().map(|f| (f.name.as_str(), f)).collect();
    for f in &manifest.files {
        match pkg.digest(&f.name) {
            None => problems.push(format!("file {} listed in the manifest is missing", f.name)),
            Some(Err(e)) => problems.push(format!(
                "file {}: cannot be read from the package ({e}): the file was changed or the package is damaged",
                f.name
            )),
            Some(Ok((size, sha))) => {
                if size != f.size {
                    problems.push(format!(
                        "file {}: size is {size} bytes, the manifest says {}",
                        f.name, f.size
                    ));
                }
                if sha != f.sha256 {
                    problems.push(format!(
                        "file {}: SHA-256 is {sha}, the manifest says {}: the file was changed",
                        f.name, f.sha256
                    ));
                }
            }
        }
    }
    for name in pkg.names() {
        if name != MANIFEST && name != SIGNATURE && !listed.contains_key(name.as_str()) && !name.ends_with('/') {
            problems.push(format!("file {name} is not listed in the manifest"));
        }
    }
    Verification {
        manifest: Some(manifest),
        problems,
    }
}
