//! Offsets of kernel struct fields, read from the kernel's BTF
//! (/sys/kernel/btf/vmlinux). The offcpu probe needs `task_struct.pid` and
//! `task_struct.tgid` and Rust eBPF has no CO-RE relocations, so the runner
//! looks them up and passes them in the probes' `CONFIG` map.
//!
//! Format: a header (magic 0xeb9f, version, flags, header length, then the
//! offset and length of the type and string sections), then one record per
//! type: name offset, info (kind in bits 24-28, member count in bits 0-15,
//! "bitfield offsets" flag in bit 31) and size/type, followed by kind-
//! specific data (for structs, 12-byte members: name offset, type, offset).

/// Errors of reading BTF.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BtfError {
    #[error("reading the kernel BTF: {0}")]
    Read(String),
    #[error("malformed BTF at byte {0}")]
    Malformed(usize),
    #[error("BTF has no struct {0}")]
    NoStruct(String),
    #[error("struct {0} has no field {1}")]
    NoField(String, String),
}

const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_ENUM64: u32 = 19;

fn u32_at(data: &[u8], at: usize) -> Result<u32, BtfError> {
    let b = data.get(at..at + 4).ok_or(BtfError::Malformed(at))?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn name_at(strings: &[u8], at: usize) -> &[u8] {
    let rest = strings.get(at..).unwrap_or_default();
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    &rest[..end]
}

/// Byte offsets of `fields` in struct `name`, in the order asked.
pub fn field_offsets(data: &[u8], name: &str, fields: &[&str]) -> Result<Vec<u64>, BtfError> {
    if data.get(0..2) != Some(&[0x9f, 0xeb]) {
        return Err(BtfError::Malformed(0));
    }
    let hdr_len = u32_at(data, 4)? as usize;
    let type_off = hdr_len + u32_at(data, 8)? as usize;
    let type_len = u32_at(data, 12)? as usize;
    let str_off = hdr_len + u32_at(data, 16)? as usize;
    let str_len = u32_at(data, 20)? as usize;
    let types = data
        .get(type_off..type_off + type_len)
        .ok_or(BtfError::Malformed(type_off))?;
    let strings = data
        .get(str_off..str_off + str_len)
        .ok_or(BtfError::Malformed(str_off))?;

    let mut at = 0;
    while at + 12 <= types.len() {
        let name_off = u32_at(types, at)? as usize;
        let info = u32_at(types, at + 4)?;
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        let bitfield = info >> 31 == 1;
        let body = at + 12;
        let extra = match kind {
            KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
            KIND_ARRAY => 12,
            KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * vlen,
            KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen,
            _ => 0,
        };
        if kind == KIND_STRUCT && name_at(strings, name_off) == name.as_bytes() {
            let mut out = Vec::with_capacity(fields.len());
            for field in fields {
                let mut found = None;
                for m in 0..vlen {
                    let member = body + m * 12;
                    let member_name = u32_at(types, member)? as usize;
                    if name_at(strings, member_name) == field.as_bytes() {
                        let raw = u32_at(types, member + 8)?;
                        let bits = if bitfield { raw & 0x00ff_ffff } else { raw };
                        found = Some(u64::from(bits / 8));
                        break;
                    }
                }
                out.push(found.ok_or_else(|| BtfError::NoField(name.into(), field.to_string()))?);
            }
            return Ok(out);
        }
        at = body + extra;
    }
    Err(BtfError::NoStruct(name.into()))
}

/// `task_struct.pid` and `task_struct.tgid` offsets of the running kernel.
pub fn task_pid_tgid_offsets() -> Result<(u64, u64), BtfError> {
    let data =
        std::fs::read("/sys/kernel/btf/vmlinux").map_err(|e| BtfError::Read(e.to_string()))?;
    let offsets = field_offsets(&data, "task_struct", &["pid", "tgid"])?;
    Ok((offsets[0], offsets[1]))
}

/// Offsets in `task_struct` of the fields a thread's exit event carries,
/// in `bench_common::ThreadTotals` order: `se.sum_exec_runtime`, `nvcsw`,
/// `nivcsw`, `min_flt`, `maj_flt`, `se.nr_migrations`.
pub fn task_totals_offsets() -> Result<[u64; 6], BtfError> {
    let data =
        std::fs::read("/sys/kernel/btf/vmlinux").map_err(|e| BtfError::Read(e.to_string()))?;
    let task = field_offsets(
        &data,
        "task_struct",
        &["se", "nvcsw", "nivcsw", "min_flt", "maj_flt"],
    )?;
    let se = field_offsets(
        &data,
        "sched_entity",
        &["sum_exec_runtime", "nr_migrations"],
    )?;
    Ok([
        task[0] + se[0],
        task[1],
        task[2],
        task[3],
        task[4],
        task[0] + se[1],
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_fields_in_a_small_btf() {
        // Strings: "\0int\0task\0pid\0tgid\0"
        let strings = b"\0int\0task\0pid\0tgid\0";
        let mut types = Vec::new();
        // [1] int, 4 bytes.
        types.extend_from_slice(&1u32.to_le_bytes());
        types.extend_from_slice(&(KIND_INT << 24).to_le_bytes());
        types.extend_from_slice(&4u32.to_le_bytes());
        types.extend_from_slice(&32u32.to_le_bytes());
        // [2] struct task { int pid at 8; int tgid at 12 }.
        types.extend_from_slice(&5u32.to_le_bytes());
        types.extend_from_slice(&((KIND_STRUCT << 24) | 2).to_le_bytes());
        types.extend_from_slice(&16u32.to_le_bytes());
        for (name, bits) in [(10u32, 64u32), (14, 96)] {
            types.extend_from_slice(&name.to_le_bytes());
            types.extend_from_slice(&1u32.to_le_bytes());
            types.extend_from_slice(&bits.to_le_bytes());
        }
        let mut data = vec![0x9f, 0xeb, 1, 0];
        data.extend_from_slice(&24u32.to_le_bytes());
        data.extend_from_slice(&0u32.to_le_bytes());
        data.extend_from_slice(&(types.len() as u32).to_le_bytes());
        data.extend_from_slice(&(types.len() as u32).to_le_bytes());
        data.extend_from_slice(&(strings.len() as u32).to_le_bytes());
        data.extend_from_slice(&types);
        data.extend_from_slice(strings);
        assert_eq!(
            field_offsets(&data, "task", &["tgid", "pid"]),
            Ok(vec![12, 8])
        );
        assert_eq!(
            field_offsets(&data, "task", &["comm"]),
            Err(BtfError::NoField("task".into(), "comm".into()))
        );
        assert_eq!(
            field_offsets(&data, "mm", &["pid"]),
            Err(BtfError::NoStruct("mm".into()))
        );
    }

    #[test]
    fn reads_the_running_kernel() {
        // Every kernel protoprof supports has BTF; pid precedes tgid.
        let (pid, tgid) = task_pid_tgid_offsets().expect("kernel BTF");
        assert!(pid > 0 && tgid == pid + 4, "pid {pid} tgid {tgid}");
        // The switch and fault counts are pairs of adjacent longs.
        let [runtime, nvcsw, nivcsw, min_flt, maj_flt, migrations] =
            task_totals_offsets().expect("kernel BTF");
        assert_eq!((nivcsw, maj_flt), (nvcsw + 8, min_flt + 8));
        assert!(
            runtime > 0 && migrations > runtime,
            "{runtime} {migrations}"
        );
    }
}
