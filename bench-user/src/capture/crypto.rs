//! Attach and read the crypto probe. The functions to probe come from
//! `profiles/crypto.toml` (families of symbol patterns, embedded at build
//! time), matched against the symbols of the target and its libraries.

use std::collections::BTreeMap;

use aya::{
    maps::{MapData, PerCpuHashMap},
    Ebpf,
};
use bench_common::{crypto_cookie, CryptoHistKey, CryptoKey, CryptoStats, LATENCY_BUCKETS};
use regex::Regex;
use serde::{Deserialize, Serialize};

use super::{
    elf::ElfFile,
    uprobes::{Point, UprobeSet},
    CaptureError,
};

/// The crypto families shipped with protoprof.
pub const DEFAULT_FAMILIES: &str = include_str!("../../../profiles/crypto.toml");

/// Most symbols probed per process: each costs a uprobe hit per call.
pub const MAX_SYMBOLS: usize = 64;

#[derive(Debug, Clone, Deserialize)]
struct FamilyFile {
    family: Vec<FamilySpec>,
}

#[derive(Debug, Clone, Deserialize)]
struct FamilySpec {
    name: String,
    library: String,
    primitive: String,
    accel: String,
    /// Called while a connection is set up (handshake markers, ECH's HPKE):
    /// counted over the whole run, since handshakes happen before a window
    /// opens, and kept out of the windows' per-record figures.
    #[serde(default)]
    connection_setup: bool,
    symbols: Vec<SymbolSpec>,
}

#[derive(Debug, Clone, Deserialize)]
struct SymbolSpec {
    pattern: String,
    length_arg: Option<u8>,
    length_scale: Option<u64>,
    /// `false`: a call handles a piece of a record, not a record (ring's
    /// one-block CTR calls for the tag and a record's last partial block).
    record: Option<bool>,
}

impl SymbolSpec {
    /// Whether one call is one record. Set-up calls (ECH's HPKE sealing a
    /// ClientHello) carry none, whatever their length says.
    fn is_record(&self, family: &FamilySpec) -> bool {
        self.record.unwrap_or(!family.connection_setup)
    }
}

/// Compiled crypto families.
#[derive(Debug, Clone)]
pub struct Families {
    entries: Vec<(FamilySpec, Vec<(Regex, SymbolSpec)>)>,
}

impl Families {
    /// Parse a families file (TOML, as `profiles/crypto.toml`).
    pub fn parse(text: &str) -> Result<Families, String> {
        let file: FamilyFile = toml::from_str(text).map_err(|e| e.message().to_string())?;
        let mut entries = Vec::new();
        for family in file.family {
            let mut symbols = Vec::new();
            for s in &family.symbols {
                let re = Regex::new(&format!("^(?:{})$", s.pattern)).map_err(|e| {
                    format!("family {:?}: pattern {:?}: {e}", family.name, s.pattern)
                })?;
                symbols.push((re, s.clone()));
            }
            entries.push((family, symbols));
        }
        Ok(Families { entries })
    }

    /// The shipped families (`profiles/crypto.toml`, compiled in). A parse
    /// error is returned, never an empty set: with no families the crypto
    /// probe would attach to nothing and report no calls, as if the target
    /// did no crypto.
    pub fn shipped() -> Result<Families, String> {
        Families::parse(DEFAULT_FAMILIES)
            .map_err(|e| format!("profiles/crypto.toml (compiled in): {e}"))
    }

    /// Whether a function name is one of the crypto functions.
    pub fn is_crypto(&self, name: &str) -> bool {
        self.classify(name).is_some()
    }

    fn classify(&self, name: &str) -> Option<(&FamilySpec, &SymbolSpec)> {
        self.entries.iter().find_map(|(family, symbols)| {
            symbols
                .iter()
                .find(|(re, _)| re.is_match(name))
                .map(|(_, s)| (family, s))
        })
    }
}

/// One probed crypto function.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CryptoSymbol {
    /// Index passed to the probe (the attach cookie).
    pub id: u32,
    pub pid: u32,
    pub symbol: String,
    pub file: String,
    pub family: String,
    pub library: String,
    pub primitive: String,
    pub accel: String,
    /// Counted over the whole run (the family's `connection_setup`).
    pub connection_setup: bool,
    /// Whether the return is probed too (call timing); never on Go.
    pub return_probe: bool,
    /// Multiplier from the length argument to bytes (0 = length unknown).
    pub length_scale: u64,
    /// One call is one record (or packet); `false` for helpers called for
    /// pieces of one, which the record size leaves out.
    #[serde(default = "whole_records")]
    pub record: bool,
}

/// Symbols saved before `record` existed counted every call as a record.
fn whole_records() -> bool {
    true
}

/// Match the symbols of process `pid` and add them to the uprobe set;
/// `next_id` numbers the symbols.
pub(super) fn points(
    set: &mut UprobeSet,
    pid: u32,
    files: &[ElfFile],
    families: &Families,
    return_probes: bool,
    next_id: &mut u32,
) -> (Vec<CryptoSymbol>, Vec<String>) {
    let mut attached = Vec::new();
    let mut notes = Vec::new();
    let mut seen_offsets = std::collections::HashSet::new();
    for file in files {
        for f in &file.functions {
            let Some((family, spec)) = families.classify(&f.name) else {
                continue;
            };
            let Some(offset) = file.file_offset(f.address) else {
                continue;
            };
            // Aliases share an address: probe it once.
            if !seen_offsets.insert((file.path.clone(), offset)) {
                continue;
            }
            if attached.len() >= MAX_SYMBOLS {
                notes.push(format!(
                    "more than {MAX_SYMBOLS} crypto symbols matched in pid {pid}; the rest were not probed"
                ));
                return (attached, notes);
            }
            let id = *next_id;
            *next_id += 1;
            let return_probe = return_probes && !file.is_go;
            let cookie = crypto_cookie(id, spec.length_arg, family.connection_setup, return_probe);
            let point = |program| Point {
                program,
                path: file.path.clone(),
                offset,
                cookie,
                pid,
            };
            set.add(point("pp_crypto"));
            if return_probe {
                set.add(point("pp_crypto_ret"));
            }
            attached.push(CryptoSymbol {
                id,
                pid,
                symbol: f.name.clone(),
                file: file.path.display().to_string(),
                family: family.name.clone(),
                library: family.library.clone(),
                primitive: family.primitive.clone(),
                accel: family.accel.clone(),
                connection_setup: family.connection_setup,
                return_probe,
                length_scale: match spec.length_arg {
                    Some(_) => spec.length_scale.unwrap_or(1),
                    None => 0,
                },
                record: spec.is_record(family),
            });
        }
    }
    (attached, notes)
}

/// Calls of one probed symbol in one process.
#[derive(Debug, Clone, Default)]
pub struct CryptoRecord {
    pub tgid: u32,
    pub symbol: u32,
    /// The measured window (phase), or `bench_common::OUTSIDE_WINDOWS` for
    /// handshake markers counted between windows.
    pub window: u32,
    pub calls: u64,
    pub timed: u64,
    pub total_ns: u64,
    /// Raw sum of the length argument (scale with the symbol's length_scale).
    pub length_sum: u64,
    /// Calls per log2 duration bucket (timed calls only).
    pub histogram: Vec<u64>,
}

pub(super) fn read(ebpf: &Ebpf) -> Result<Vec<CryptoRecord>, CaptureError> {
    let err = |name: &'static str| move |source| CaptureError::Map { name, source };
    let stats: PerCpuHashMap<&MapData, CryptoKey, CryptoStats> =
        PerCpuHashMap::try_from(ebpf.map("CRYPTO").ok_or(CaptureError::Missing("CRYPTO"))?)
            .map_err(err("CRYPTO"))?;
    let mut records: BTreeMap<(u32, u32, u32), CryptoRecord> = BTreeMap::new();
    for entry in stats.iter() {
        let (k, per_cpu) = entry.map_err(err("CRYPTO"))?;
        records.insert(
            (k.tgid, k.symbol, k.window),
            CryptoRecord {
                tgid: k.tgid,
                symbol: k.symbol,
                window: k.window,
                calls: per_cpu.iter().map(|s| s.calls).sum(),
                timed: per_cpu.iter().map(|s| s.timed).sum(),
                total_ns: per_cpu.iter().map(|s| s.total_ns).sum(),
                length_sum: per_cpu.iter().map(|s| s.bytes).sum(),
                histogram: vec![0; LATENCY_BUCKETS as usize],
            },
        );
    }
    let hist: PerCpuHashMap<&MapData, CryptoHistKey, u64> = PerCpuHashMap::try_from(
        ebpf.map("CRYPTO_HIST")
            .ok_or(CaptureError::Missing("CRYPTO_HIST"))?,
    )
    .map_err(err("CRYPTO_HIST"))?;
    for entry in hist.iter() {
        let (k, per_cpu) = entry.map_err(err("CRYPTO_HIST"))?;
        if let Some(r) = records.get_mut(&(k.tgid, k.symbol, k.window)) {
            if let Some(slot) = r.histogram.get_mut(k.bucket as usize) {
                *slot += per_cpu.iter().sum::<u64>();
            }
        }
    }
    Ok(records.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_families_parse_and_classify() {
        let f = Families::shipped().expect("crypto.toml parses");
        let (fam, _) = f
            .classify("ring_core_0_17_14__chacha20_poly1305_seal_avx2")
            .expect("ring chacha");
        assert_eq!(fam.primitive, "chacha20-poly1305");
        let (fam, _) = f
            .classify("ring_core_0_17_14__ChaCha20_ctr32_nohw")
            .expect("ring chacha fallback");
        assert_eq!(fam.accel, "software");
        let (fam, spec) = f
            .classify("ring_core_0_17_14_aesni_gcm_encrypt")
            .expect("ring aes-gcm");
        assert_eq!(
            (fam.library.as_str(), fam.accel.as_str(), spec.length_arg),
            ("ring", "hardware", Some(2))
        );
        let (fam, _) = f
            .classify("ring_core_0_17_14_vpaes_ctr32_encrypt_blocks")
            .expect("fallback");
        assert_eq!(fam.accel, "software");
        let (fam, _) = f
            .classify("crypto/internal/fips140/aes/gcm.gcmAesEnc")
            .expect("go aes-gcm asm");
        assert_eq!(fam.accel, "hardware");
        let (fam, _) = f
            .classify("crypto/internal/fips140/aes/gcm.sealGeneric")
            .expect("go fallback");
        assert_eq!(fam.accel, "software");
        assert!(f
            .classify("vendor/golang.org/x/crypto/chacha20poly1305.chacha20Poly1305Seal")
            .is_some());
        assert!(f.classify("EVP_EncryptUpdate").is_some());
        // OpenSSL 3's exported entry points, with their length arguments.
        let length = |name: &str| f.classify(name).map(|(_, s)| s.length_arg);
        assert_eq!(length("EVP_Cipher"), Some(Some(3)));
        assert_eq!(length("EVP_CipherUpdate"), Some(Some(4)));
        assert_eq!(length("EVP_DecryptUpdate"), Some(Some(4)));
        assert_eq!(length("EVP_CipherFinal_ex"), None);
        assert_eq!(length("EVP_CipherInit_ex"), None);
        for aead in [
            "EVP_AEAD_CTX_seal",
            "EVP_AEAD_CTX_open",
            "EVP_AEAD_CTX_seal_scatter",
            "EVP_AEAD_CTX_open_gather",
        ] {
            let (fam, spec) = f.classify(aead).expect("boringssl aead");
            assert_eq!(fam.library, "boringssl", "{aead}");
            assert!(spec.is_record(fam), "{aead}");
        }
        // HPKE's length is known, but it seals a ClientHello, not a record;
        // ring's one-block helper handles a piece of one.
        let (fam, spec) = f.classify("EVP_HPKE_CTX_open").expect("ech hpke");
        assert_eq!((spec.length_arg, spec.is_record(fam)), (Some(5), false));
        let (fam, spec) = f
            .classify("ring_core_0_17_14_aes_hw_ctr32_encrypt_blocks")
            .expect("ring one-block helper");
        assert!(!spec.is_record(fam));
        let (fam, spec) = f
            .classify("ring_core_0_17_14_aesni_gcm_encrypt")
            .expect("ring aes-gcm");
        assert!(spec.is_record(fam));
        assert!(f
            .classify("ring_core_0_17_14_aesni_gcm_encrypt_and_more")
            .is_none());
        assert!(f.classify("memcpy").is_none());
    }
}
