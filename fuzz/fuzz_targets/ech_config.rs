//! ECH key material as `sing-box generate ech-keypair` writes it: the
//! ECHConfigList a client loads, each ECHConfig in it, and the "ECH KEYS"
//! contents a server loads.
#![no_main]

use bench_proto::ech::wire::{decode_keys, encode_config, parse_config, split_config_list};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    if let Ok(configs) = split_config_list(input) {
        for c in configs {
            if let Ok(info) = parse_config(c) {
                // What a config says survives our encoding of it (for keys
                // of a size a KEM uses: the encoder's fields are u16-long).
                if info.public_key.len() <= 1024 {
                    let ours = encode_config(info.config_id, &info.public_key, &info.public_name);
                    let again = parse_config(&ours).expect("our encoding parses");
                    assert_eq!(
                        (again.config_id, &again.public_key, &again.public_name),
                        (info.config_id, &info.public_key, &info.public_name)
                    );
                }
            }
        }
    }
    let _ = parse_config(input);
    if let Ok(keys) = decode_keys(input) {
        assert!(!keys.is_empty());
        for k in keys {
            assert!(parse_config(&k.config).is_ok());
        }
    }
});
