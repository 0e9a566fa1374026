//! A small reader of the kernel's BTF: the raw bytes, one `u32` per type id, answers
//! by name. vmlinux BTF is ~5.5 MB; a general parser (btf_rs, aya) builds an object
//! per type and per member, 20–30 MB of heap at start-up, which set kadvisor's peak
//! RSS. The loader needs a few struct members, tracepoint prototypes and the ids of
//! its attach targets: that is all this answers (format: the kernel's
//! Documentation/bpf/btf.rst).
use std::{ops::Range, path::Path};

/// Why a BTF file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MalformedBtf {
    #[error("cannot read the file")]
    Read(#[from] std::io::Error),
    #[error("not BTF in this machine's byte order (magic {0:#06x})")]
    Magic(u16),
    #[error("truncated: {0}")]
    Truncated(&'static str),
    #[error("type {id} has unknown kind {kind}")]
    UnknownKind { id: usize, kind: u32 },
}

const MAGIC: u16 = 0xeb9f;
/// `struct btf_type`: name_off, info, size_or_type.
const TYPE_HEADER: usize = 12;

/// The kinds this reader looks at (`BTF_KIND_*`).
pub const STRUCT: u32 = 4;
pub const UNION: u32 = 5;
pub const PTR: u32 = 2;
pub const ENUM: u32 = 6;
pub const TYPEDEF: u32 = 8;
pub const FUNC: u32 = 12;
pub const FUNC_PROTO: u32 = 13;

/// One parsed file: the bytes and where each type starts.
pub struct RawBtf {
    data: Vec<u8>,
    /// Byte offset of type id `i` in `data`; id 0 is `void` (no entry of its own).
    types: Vec<u32>,
    strings: Range<usize>,
}

/// One type: its id and where its record starts.
#[derive(Clone, Copy)]
pub struct Type<'a> {
    btf: &'a RawBtf,
    pub id: u32,
    at: usize,
}

/// A member of a struct or union.
pub struct Member<'a> {
    pub name: &'a str,
    pub type_id: u32,
    pub bit_offset: u32,
}

impl RawBtf {
    pub fn read(path: &Path) -> Result<Self, MalformedBtf> {
        Self::parse(std::fs::read(path)?)
    }

    pub fn parse(data: Vec<u8>) -> Result<Self, MalformedBtf> {
        let u16_at = |at: usize| {
            data.get(at..at + 2)
                .map(|b| u16::from_ne_bytes([b[0], b[1]]))
        };
        let magic = u16_at(0).ok_or(MalformedBtf::Truncated("header"))?;
        if magic != MAGIC {
            return Err(MalformedBtf::Magic(magic));
        }
        let header = |at: usize| {
            u32_at(&data, at)
                .map(|v| v as usize)
                .ok_or(MalformedBtf::Truncated("header"))
        };
        let header_len = header(4)?;
        let types_at = header_len + header(8)?;
        let types_end = types_at + header(12)?;
        let strings_at = header_len + header(16)?;
        let strings = strings_at..strings_at + header(20)?;
        if types_end > data.len() || strings.end > data.len() {
            return Err(MalformedBtf::Truncated("sections"));
        }
        let mut types = vec![0];
        let mut at = types_at;
        while at < types_end {
            let info = u32_at(&data, at + 4).ok_or(MalformedBtf::Truncated("types"))?;
            let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
            let trailing = match kind {
                1 | 14 | 17 => 4,                      // INT, VAR, DECL_TAG
                3 => 12,                               // ARRAY
                STRUCT | UNION | 15 | 19 => vlen * 12, // members, DATASEC, ENUM64
                6 | FUNC_PROTO => vlen * 8,            // ENUM, parameters
                PTR | 7 | TYPEDEF | 9 | 10 | 11 | FUNC | 16 | 18 => 0,
                kind => {
                    return Err(MalformedBtf::UnknownKind {
                        id: types.len(),
                        kind,
                    });
                }
            };
            types.push(u32::try_from(at).map_err(|_| MalformedBtf::Truncated("size"))?);
            at += TYPE_HEADER + trailing;
        }
        if at != types_end {
            return Err(MalformedBtf::Truncated("last type"));
        }
        Ok(Self {
            data,
            types,
            strings,
        })
    }

    /// The type with id `id` (`None` for `void` and ids out of range).
    pub fn get(&self, id: u32) -> Option<Type<'_>> {
        let at = *self.types.get(id as usize).filter(|_| id != 0)?;
        Some(Type {
            btf: self,
            id,
            at: at as usize,
        })
    }

    /// Every type named `name` of kind `kind`, in id order.
    pub fn named(&self, name: &str, kind: u32) -> impl Iterator<Item = Type<'_>> {
        (1..self.types.len())
            .filter_map(|id| self.get(u32::try_from(id).ok()?))
            .filter(move |t| t.kind() == kind && t.name() == name)
    }

    fn string(&self, offset: u32) -> &str {
        let start = self.strings.start + offset as usize;
        let bytes = self.data.get(start..self.strings.end).unwrap_or_default();
        let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
        std::str::from_utf8(&bytes[..end]).unwrap_or_default()
    }

    fn word(&self, at: usize) -> u32 {
        // In range: `parse` checked every record against the type section.
        u32_at(&self.data, at).unwrap_or_default()
    }

    /// An aya `Btf` with the kernel's type ids of `targets` (name, kind) and nothing
    /// else: aya reads a kernel BTF only for the ids of tp_btf, fentry and iterator
    /// attach targets (and for CO-RE relocations, which kadvisor's object does not
    /// have; relocating against this one would fail loudly). Every other id holds a
    /// `void *`, so ids keep their kernel values: ~12 bytes per type in BTF, 40 in
    /// aya's parse of it. A target this kernel lacks is absent, as in the full BTF:
    /// loading its program fails the same way.
    pub fn attach_targets(&self, targets: &[(&str, u32)]) -> Result<aya::Btf, aya::BtfError> {
        let found: Vec<(u32, &str, u32)> = targets
            .iter()
            .filter_map(|&(name, kind)| Some((self.named(name, kind).next()?.id, name, kind)))
            .collect();
        let last = found.iter().map(|(id, _, _)| *id).max().unwrap_or(0);
        let mut strings = vec![0_u8];
        let mut types = Vec::with_capacity(last as usize * TYPE_HEADER);
        for id in 1..=last {
            let (name, kind) = match found.iter().find(|(found, _, _)| *found == id) {
                Some((_, name, kind)) => {
                    let offset = strings.len();
                    strings.extend(name.bytes().chain([0]));
                    (offset, *kind)
                }
                None => (0, PTR),
            };
            // name_off, info (kind; a FUNC's vlen 0 = static linkage), type 0 (void).
            let name = u32::try_from(name).unwrap_or_default();
            for word in [name, kind << 24, 0] {
                types.extend(word.to_ne_bytes());
            }
        }
        let (types_len, strings_len) = (types.len() as u32, strings.len() as u32);
        let header = [
            u32::from(MAGIC) | (1 << 16), // magic, version 1, flags 0
            24,                           // hdr_len
            0,                            // type_off
            types_len,
            types_len, // str_off
            strings_len,
        ];
        let mut data = Vec::with_capacity(24 + types.len() + strings.len());
        for word in header {
            data.extend(word.to_ne_bytes());
        }
        data.extend(types);
        data.extend(strings);
        aya::Btf::parse(&data, aya::Endianness::default())
    }
}

impl<'a> Type<'a> {
    pub fn name(&self) -> &'a str {
        self.btf.string(self.btf.word(self.at))
    }

    fn info(&self) -> u32 {
        self.btf.word(self.at + 4)
    }

    pub fn kind(&self) -> u32 {
        (self.info() >> 24) & 0x1f
    }

    fn vlen(&self) -> usize {
        (self.info() & 0xffff) as usize
    }

    /// The type this one refers to (a typedef's, a pointer's target, a function
    /// prototype's return type).
    pub fn target(&self) -> Option<Type<'a>> {
        self.btf.get(self.btf.word(self.at + 8))
    }

    /// A struct's or union's members (none for other kinds).
    pub fn members(&self) -> impl Iterator<Item = Member<'a>> + 'a {
        let (btf, at, bitfields) = (self.btf, self.at, self.info() >> 31 == 1);
        let count = if matches!(self.kind(), STRUCT | UNION) {
            self.vlen()
        } else {
            0
        };
        (0..count).map(move |i| {
            let m = at + TYPE_HEADER + i * 12;
            let offset = btf.word(m + 8);
            Member {
                name: btf.string(btf.word(m)),
                type_id: btf.word(m + 4),
                // With kind_flag, the top 8 bits hold a bitfield's size.
                bit_offset: if bitfields {
                    offset & 0x00ff_ffff
                } else {
                    offset
                },
            }
        })
    }

    /// The value of enumerator `name` of an enum (none for other kinds).
    pub fn enumerator(&self, name: &str) -> Option<u32> {
        if self.kind() != ENUM {
            return None;
        }
        (0..self.vlen()).find_map(|i| {
            let at = self.at + TYPE_HEADER + i * 8;
            (self.btf.string(self.btf.word(at)) == name).then(|| self.btf.word(at + 4))
        })
    }

    /// A function prototype's parameter types (none for other kinds).
    pub fn params(&self) -> impl Iterator<Item = Option<Type<'a>>> + 'a {
        let (btf, at) = (self.btf, self.at);
        let count = if self.kind() == FUNC_PROTO {
            self.vlen()
        } else {
            0
        };
        (0..count).map(move |i| btf.get(btf.word(at + TYPE_HEADER + i * 8 + 4)))
    }
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    let b = data.get(at..at + 4)?;
    Some(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

    /// The ids this reader gives aya are the ones aya finds in its own full parse of
    /// the running kernel's BTF (the kernel checks them when a program loads).
    #[test]
    fn attach_ids_match_a_full_parse_of_the_running_kernel() {
        let full = aya::Btf::parse_file(VMLINUX, aya::Endianness::default()).unwrap();
        let raw = RawBtf::read(Path::new(VMLINUX)).unwrap();
        let targets = [
            ("btf_trace_sched_process_exit", TYPEDEF),
            ("bpf_iter_task", FUNC),
            ("bpf_iter_cgroup", FUNC),
        ];
        let sparse = raw.attach_targets(&targets).unwrap();
        for (name, kind) in targets {
            let kind = if kind == TYPEDEF {
                aya_obj::btf::BtfKind::Typedef
            } else {
                aya_obj::btf::BtfKind::Func
            };
            assert_eq!(
                sparse.id_by_type_name_kind(name, kind).unwrap(),
                full.id_by_type_name_kind(name, kind).unwrap(),
                "{name}"
            );
        }
    }
}
