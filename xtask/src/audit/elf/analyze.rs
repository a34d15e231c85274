//! ELF hardening properties of one file, read from its bytes alone (no I/O, no host tools).
//!
//! What is measured mirrors what the loader and the toolchain really do, so that the result
//! agrees with Debian's `checksec` where checksec is right, and goes further where it is not:
//! a `-pie` link of non-PIC code carries text relocations and is flagged here, while checksec
//! calls it PIE. Parsing uses the `object` crate (gimli-rs), the maintained standard ELF reader.

use anyhow::{bail, Context, Result};
use object::elf;
use object::read::elf::{Dyn, FileHeader, ProgramHeader, SectionHeader, Sym};
use object::Endianness;
use serde::Serialize;

/// What kind of object the file is, which decides which rules apply to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ElfKind {
    /// A program: ET_EXEC, or ET_DYN marked as a program (DF_1_PIE or DT_DEBUG).
    Executable,
    /// Any other ET_DYN: a shared library or plugin. libc.so.6 is one although it has PT_INTERP
    /// (it can be run to print its version); like checksec, the mark of a program decides.
    SharedLibrary,
    /// ET_REL (kernel modules, static archives' members): loaded by the kernel or a linker, not audited.
    Relocatable,
    /// ET_CORE or anything else.
    Other,
}

/// Same words as `checksec --output=json` for easy comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pie {
    Yes,
    No,
    Dso,
    Rel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Relro {
    Full,
    Partial,
    No,
}

/// A property that may not apply to an object (for example a stack canary in pure Go code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tri {
    Yes,
    No,
    NotApplicable,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ElfProperties {
    pub kind: ElfKind,
    pub machine: String,
    pub pie: Pie,
    /// PT_INTERP present: dynamically linked program.
    pub interpreter: Option<String>,
    pub relro: Relro,
    /// PT_GNU_STACK present and not executable.
    pub nx: bool,
    /// `__stack_chk_fail` / `__stack_chk_guard` referenced (symbol tables).
    pub canary: Tri,
    /// `__*_chk` fortified libc calls imported; not applicable when nothing fortifiable is called.
    pub fortify: Tri,
    pub fortified_calls: Vec<String>,
    pub rpath: Vec<String>,
    pub runpath: Vec<String>,
    /// DT_TEXTREL or DF_TEXTREL: code pages written at load time.
    pub textrel: bool,
    /// No `.symtab` section left.
    pub stripped: bool,
    /// Built by the Go toolchain (`.go.buildinfo` section or Go build ID note).
    pub go: bool,
    /// A Go program that also links C code (runtime/cgo), so C hardening applies to it.
    pub cgo: bool,
}

const ELF_MAGIC: &[u8; 4] = b"\x7fELF";

pub fn is_elf(head: &[u8]) -> bool {
    head.len() >= 4 && &head[..4] == ELF_MAGIC
}

/// libc functions for which glibc/uClibc/musl-fortify provide a `__*_chk` variant; importing one
/// of these plain means FORTIFY could have applied.
const FORTIFIABLE: &[&str] = &[
    "memcpy",
    "memmove",
    "mempcpy",
    "memset",
    "stpcpy",
    "stpncpy",
    "strcat",
    "strcpy",
    "strncat",
    "strncpy",
    "sprintf",
    "snprintf",
    "vsprintf",
    "vsnprintf",
    "printf",
    "fprintf",
    "vprintf",
    "vfprintf",
    "dprintf",
    "vdprintf",
    "asprintf",
    "vasprintf",
    "gets",
    "fgets",
    "fgets_unlocked",
    "read",
    "pread",
    "pread64",
    "recv",
    "recvfrom",
    "readlink",
    "readlinkat",
    "getcwd",
    "getwd",
    "realpath",
    "confstr",
    "getgroups",
    "ttyname_r",
    "getlogin_r",
    "gethostname",
    "getdomainname",
    "wcscpy",
    "wcsncpy",
    "wcscat",
    "wcsncat",
    "wmemcpy",
    "wmemmove",
    "wmemset",
    "mbstowcs",
    "wcstombs",
    "wcrtomb",
    "wctomb",
    "fread",
    "fread_unlocked",
    "poll",
    "ppoll",
    "syslog",
    "vsyslog",
    "longjmp",
    "siglongjmp",
    "explicit_bzero",
    "fdelt",
];

pub fn analyze(data: &[u8]) -> Result<ElfProperties> {
    if !is_elf(data) {
        bail!("not an ELF file (no \\x7fELF magic)");
    }
    match data.get(4) {
        Some(&elf::ELFCLASS32) => analyze_as::<elf::FileHeader32<Endianness>>(data),
        Some(&elf::ELFCLASS64) => analyze_as::<elf::FileHeader64<Endianness>>(data),
        other => bail!("unknown ELF class {other:?}"),
    }
}

struct Segments<'a, E: FileHeader> {
    headers: &'a [E::ProgramHeader],
    endian: E::Endian,
}

impl<E: FileHeader> Segments<'_, E> {
    /// File offset of a virtual address, through the PT_LOAD segment that maps it.
    fn offset_of(&self, vaddr: u64) -> Option<u64> {
        self.headers.iter().find_map(|p| {
            let start: u64 = p.p_vaddr(self.endian).into();
            let size: u64 = p.p_filesz(self.endian).into();
            (p.p_type(self.endian) == elf::PT_LOAD && vaddr >= start && vaddr < start + size)
                .then(|| vaddr - start + p.p_offset(self.endian).into())
        })
    }
}

fn c_string(data: &[u8], offset: u64) -> Option<String> {
    let rest = data.get(usize::try_from(offset).ok()?..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

fn analyze_as<E: FileHeader<Endian = Endianness>>(data: &[u8]) -> Result<ElfProperties> {
    let header = E::parse(data).context("malformed ELF header")?;
    let endian = header.endian().context("unknown ELF byte order")?;
    let e_type = header.e_type(endian);
    let phdrs = header
        .program_headers(endian, data)
        .context("malformed program headers")?;
    let segments = Segments::<E> {
        headers: phdrs,
        endian,
    };

    let mut interpreter = None;
    let mut has_relro = false;
    let mut nx = false;
    let mut go_note = false;
    let mut dynamic: &[E::Dyn] = &[];
    for p in phdrs {
        match p.p_type(endian) {
            elf::PT_INTERP => {
                let bytes = p
                    .data(endian, data)
                    .ok()
                    .context("PT_INTERP lies outside the file")?;
                interpreter = Some(
                    String::from_utf8_lossy(bytes)
                        .trim_end_matches('\0')
                        .to_string(),
                );
            }
            elf::PT_GNU_RELRO => has_relro = true,
            elf::PT_GNU_STACK => nx = p.p_flags(endian) & elf::PF_X == 0,
            elf::PT_DYNAMIC => {
                dynamic = p
                    .dynamic(endian, data)
                    .context("malformed PT_DYNAMIC")?
                    .unwrap_or(&[])
            }
            elf::PT_NOTE => {
                if let Ok(Some(mut notes)) = p.notes(endian, data) {
                    while let Ok(Some(note)) = notes.next() {
                        go_note |= note.name() == b"Go" && note.n_type(endian) == 4;
                    }
                }
            }
            _ => {}
        }
    }

    let mut bind_now = false;
    let mut textrel = false;
    let mut flags_1_pie = false;
    let mut debug_entry = false;
    let mut needed_offsets = Vec::new();
    let (mut rpath_offsets, mut runpath_offsets) = (Vec::new(), Vec::new());
    let mut strtab = None;
    for d in dynamic {
        let tag = d.d_tag(endian).into();
        let val: u64 = d.d_val(endian).into();
        match u32::try_from(tag).unwrap_or(u32::MAX) {
            elf::DT_BIND_NOW => bind_now = true,
            elf::DT_TEXTREL => textrel = true,
            elf::DT_FLAGS => {
                bind_now |= val & u64::from(elf::DF_BIND_NOW) != 0;
                textrel |= val & u64::from(elf::DF_TEXTREL) != 0;
            }
            elf::DT_FLAGS_1 => {
                bind_now |= val & u64::from(elf::DF_1_NOW) != 0;
                flags_1_pie = val & u64::from(elf::DF_1_PIE) != 0;
            }
            // The linker gives programs a DT_DEBUG slot for debuggers, never shared libraries.
            elf::DT_DEBUG => debug_entry = true,
            elf::DT_RPATH => rpath_offsets.push(val),
            elf::DT_RUNPATH => runpath_offsets.push(val),
            elf::DT_NEEDED => needed_offsets.push(val),
            elf::DT_STRTAB => strtab = segments.offset_of(val),
            _ => {}
        }
    }
    let dyn_string = |offset: u64| -> String {
        strtab
            .and_then(|base| c_string(data, base + offset))
            .unwrap_or_else(|| "<unreadable>".to_string())
    };
    let rpath: Vec<String> = rpath_offsets.into_iter().map(dyn_string).collect();
    let runpath: Vec<String> = runpath_offsets.into_iter().map(dyn_string).collect();
    let needed: Vec<String> = needed_offsets.into_iter().map(dyn_string).collect();

    // Symbols and section names: both symbol tables, like `readelf -s` (and checksec) reads them.
    let sections = header
        .sections(endian, data)
        .context("malformed section headers")?;
    let mut stripped = true;
    let mut go_section = false;
    for s in sections.iter() {
        let name = sections.section_name(endian, s).unwrap_or(b"");
        stripped &= s.sh_type(endian) != elf::SHT_SYMTAB;
        go_section |= name == b".go.buildinfo" || name == b".note.go.buildid";
    }
    let mut symbols = std::collections::BTreeSet::new();
    for kind in [elf::SHT_SYMTAB, elf::SHT_DYNSYM] {
        let table = sections
            .symbols(endian, data, kind)
            .context("malformed symbol table")?;
        for sym in table.iter() {
            if let Ok(name) = sym.name(endian, table.strings()) {
                if !name.is_empty() {
                    symbols.insert(String::from_utf8_lossy(name).into_owned());
                }
            }
        }
    }

    let go = go_note || go_section;
    let links_libc = needed
        .iter()
        .any(|n| n.starts_with("libc.so") || n.starts_with("libc."));
    // `x_cgo_init` is C code from runtime/cgo (`_cgo_init`, without the x, is in every Go
    // runtime). Without symbols, fall back on libc being linked or the recorded build setting.
    let cgo = go
        && (symbols.contains("x_cgo_init")
            || links_libc
            || (stripped && contains(data, b"\tCGO_ENABLED=1\n")));
    let canary_symbol = symbols
        .iter()
        .any(|s| s == "__stack_chk_fail" || s == "__stack_chk_guard");
    let canary = match (canary_symbol, go && !cgo) {
        (true, _) => Tri::Yes,
        (false, true) => Tri::NotApplicable,
        (false, false) => Tri::No,
    };
    let fortified_calls: Vec<String> = symbols
        .iter()
        .filter(|s| s.starts_with("__") && s.ends_with("_chk") && !s.starts_with("__stack_chk"))
        .cloned()
        .collect();
    let fortifiable = symbols.iter().any(|s| FORTIFIABLE.contains(&s.as_str()));
    let fortify = if !fortified_calls.is_empty() {
        Tri::Yes
    } else if fortifiable {
        Tri::No
    } else {
        Tri::NotApplicable
    };

    let (kind, pie) = match e_type {
        elf::ET_EXEC => (ElfKind::Executable, Pie::No),
        elf::ET_DYN if flags_1_pie || debug_entry => (ElfKind::Executable, Pie::Yes),
        elf::ET_DYN => (ElfKind::SharedLibrary, Pie::Dso),
        elf::ET_REL => (ElfKind::Relocatable, Pie::Rel),
        _ => (ElfKind::Other, Pie::No),
    };
    let relro = match (has_relro, bind_now) {
        (true, true) => Relro::Full,
        (true, false) => Relro::Partial,
        (false, _) => Relro::No,
    };

    Ok(ElfProperties {
        kind,
        machine: machine_name(header.e_machine(endian)),
        pie,
        interpreter,
        relro,
        nx,
        canary,
        fortify,
        fortified_calls,
        rpath,
        runpath,
        textrel,
        stripped,
        go,
        cgo,
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn machine_name(machine: u16) -> String {
    match machine {
        elf::EM_ARM => "arm".into(),
        elf::EM_AARCH64 => "aarch64".into(),
        elf::EM_X86_64 => "x86_64".into(),
        elf::EM_386 => "i386".into(),
        other => format!("machine-{other}"),
    }
}
impl<'de> serde::Deserialize<'de> for ElfKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "executable" => Ok(ElfKind::Executable),
            "shared-library" => Ok(ElfKind::SharedLibrary),
            other => Err(serde::de::Error::custom(format!(
                "unknown ELF kind '{other}' (expected executable or shared-library)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_non_elf_with_a_reason() {
        let err = analyze(b"#!/bin/sh\necho hi\n").unwrap_err();
        assert!(err.to_string().contains("not an ELF"));
        assert!(!is_elf(b"\x7fEL"));
    }

    #[test]
    fn rejects_truncated_elf() {
        let mut bytes = b"\x7fELF".to_vec();
        bytes.extend_from_slice(&[1, 1, 1, 0]);
        assert!(analyze(&bytes).is_err());
    }

    #[test]
    fn reads_the_running_test_binary() {
        // The host test binary is a real ELF: it must parse, be an executable and have NX.
        let exe = std::env::current_exe().unwrap();
        let props = analyze(&std::fs::read(exe).unwrap()).unwrap();
        assert_eq!(props.kind, ElfKind::Executable);
        assert!(props.nx);
        assert!(!props.go);
    }
}
