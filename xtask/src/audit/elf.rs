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

use crate::rootfs::RootFs;

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

/// One rule of `configs/hardening/elf-rules.toml`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElfRule {
    pub property: Property,
    /// Kinds of object the rule is checked on.
    pub applies_to: Vec<ElfKind>,
    pub severity: crate::report::Severity,
    /// Where the requirement comes from (Buildroot option, KSPP, distribution policy).
    pub source: String,
    pub title: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Property {
    Pie,
    Relro,
    Nx,
    Canary,
    Fortify,
    Rpath,
    Runpath,
    Textrel,
    Stripped,
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

/// One `[[elf]]` entry of the exceptions file: one file and a property.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElfException {
    pub path: String,
    pub property: Property,
    pub reason: String,
}

/// One `[[config]]` rule: hardening proved once from the Buildroot `.config`, because the
/// toolchain wrapper applies it to every compile or link (a file's bytes cannot show it).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigRule {
    /// Holds when one of these options is `=y`.
    pub any_of: Vec<String>,
    pub severity: crate::report::Severity,
    pub source: String,
    pub title: String,
}

/// The ELF rule table: per-file rules and build-configuration rules.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElfRules {
    pub rule: Vec<ElfRule>,
    #[serde(default)]
    pub config: Vec<ConfigRule>,
}

pub fn parse_rules(text: &str) -> Result<ElfRules> {
    toml::from_str(text).context("ELF rule table has an unexpected shape")
}

/// Judge the `[[config]]` rules on the settings of a Buildroot `.config` (the last setting of a
/// symbol wins, as in Kconfig).
pub fn evaluate_config(
    rules: &[ConfigRule],
    settings: &[crate::kconfig::Setting],
) -> Vec<crate::report::Finding> {
    use crate::report::{Finding, Verdict};
    rules
        .iter()
        .map(|rule| {
            let set = rule.any_of.iter().find_map(|symbol| {
                settings
                    .iter()
                    .rev()
                    .find(|s| &s.symbol == symbol)
                    .filter(|s| s.value == crate::kconfig::Value::Yes)
            });
            let (verdict, detail) = match set {
                Some(s) => (Verdict::Pass, format!("{}=y ({})", s.symbol, s.origin)),
                None => (
                    Verdict::Fail,
                    format!("none of {} is =y", rule.any_of.join(", ")),
                ),
            };
            Finding {
                subject: "build configuration".into(),
                rule: rule.title.clone(),
                source: rule.source.clone(),
                severity: rule.severity,
                verdict,
                detail,
            }
        })
        .collect()
}

/// Check the `[[elf]]` exceptions: each names exactly one file, so every departure is seen and
/// reasoned file by file (a wildcard would also waive files nobody looked at).
pub fn check_exceptions(exceptions: &[ElfException]) -> Result<()> {
    for e in exceptions {
        anyhow::ensure!(
            e.path.starts_with('/') && !e.path.contains(['*', '?', '[']),
            "the [[elf]] exception for '{}' must name one file by its absolute path, without wildcards",
            e.path
        );
        anyhow::ensure!(
            !e.reason.trim().is_empty(),
            "the [[elf]] exception for {} ({:?}) gives no reason",
            e.path,
            e.property
        );
    }
    Ok(())
}

/// Judge one file against every rule that applies to its kind. `None` from a property means
/// "does not apply" (pure Go code has no canary) and yields no finding. `image` is the root
/// filesystem the file is in: library search paths are judged by the folders they name there.
pub fn evaluate(
    path: &str,
    props: &ElfProperties,
    rules: &[ElfRule],
    exceptions: &[ElfException],
    image: &dyn RootFs,
) -> Result<Vec<crate::report::Finding>> {
    use crate::report::{Finding, Verdict};
    let mut findings = Vec::new();
    for rule in rules.iter().filter(|r| r.applies_to.contains(&props.kind)) {
        let judged = match rule.property {
            Property::Rpath => Some(judge_search_path("DT_RPATH", &props.rpath, path, image)?),
            Property::Runpath => Some(judge_search_path(
                "DT_RUNPATH",
                &props.runpath,
                path,
                image,
            )?),
            other => judge(other, props),
        };
        let Some((ok, detail)) = judged else {
            continue;
        };
        let verdict = if ok {
            Verdict::Pass
        } else {
            match exceptions
                .iter()
                .find(|e| e.property == rule.property && e.path == path)
            {
                Some(e) => Verdict::Exception(e.reason.clone()),
                None => Verdict::Fail,
            }
        };
        findings.push(Finding {
            subject: path.to_string(),
            rule: rule.title.clone(),
            source: rule.source.clone(),
            severity: rule.severity,
            verdict,
            detail,
        });
    }
    Ok(findings)
}

/// A library search path is a threat when someone other than root can put a library where it
/// points, or when where it points is not fixed: judge each entry by the folder it names in the
/// image. A root-owned folder that only root can write (systemd's /usr/lib/systemd) is as safe
/// as /usr/lib; an empty entry, a relative path, $ORIGIN climbing out with `..`, a build-tree
/// path the image does not have, or a writable folder (/tmp) is not.
fn judge_search_path(
    tag: &str,
    entries: &[String],
    file: &str,
    image: &dyn RootFs,
) -> Result<(bool, String)> {
    if entries.is_empty() {
        return Ok((true, format!("no {tag}")));
    }
    let mut problems = Vec::new();
    for list in entries {
        // An empty DT_RUNPATH string is one empty entry; "a::b" holds one in the middle.
        for entry in list.split(':') {
            if let Some(problem) = search_dir_problem(entry, file, image)? {
                problems.push(format!("'{entry}': {problem}"));
            }
        }
    }
    Ok(if problems.is_empty() {
        (
            true,
            format!("{tag} {entries:?}: root-owned folders only root can write"),
        )
    } else {
        (false, format!("{tag} {}", problems.join("; ")))
    })
}

fn search_dir_problem(entry: &str, file: &str, image: &dyn RootFs) -> Result<Option<String>> {
    let origin = ["$ORIGIN", "${ORIGIN}"]
        .iter()
        .find_map(|token| entry.strip_prefix(token));
    let dir = match origin {
        _ if entry.is_empty() => {
            return Ok(Some(
                "empty entry (Buildroot's fix-rpath empties a build-tree path): remove it".into(),
            ))
        }
        Some(rest) if rest.split('/').any(|part| part == "..") => {
            return Ok(Some(
                "$ORIGIN with '..' reaches outside the file's own folder".into(),
            ))
        }
        Some(rest) => format!("{}{rest}", file.rsplit_once('/').map_or("", |(dir, _)| dir)),
        None if entry.contains('$') => {
            return Ok(Some(
                "a token other than $ORIGIN: the folder depends on the machine".into(),
            ))
        }
        None if !entry.starts_with('/') => {
            return Ok(Some(
                "relative: resolved against the working directory".into(),
            ))
        }
        None => entry.to_string(),
    };
    let Some((real, stat)) = image.resolve(&dir, true)? else {
        return Ok(Some(format!(
            "{dir} is not in the image (a build-tree path?)"
        )));
    };
    if !stat.is_dir {
        return Ok(Some(format!("{dir} is not a folder in the image")));
    }
    // Every folder on the way must be root's alone: whoever can write one can swap what is below.
    let mut prefix = String::new();
    for part in std::iter::once("").chain(real.split('/').filter(|p| !p.is_empty())) {
        if !part.is_empty() {
            prefix.push('/');
            prefix.push_str(part);
        }
        let shown = if prefix.is_empty() { "/" } else { &prefix };
        let Some(s) = image.lstat(shown)? else {
            return Ok(Some(format!("{shown} vanished while reading the image")));
        };
        if s.uid != 0 || s.mode & 0o022 != 0 {
            return Ok(Some(format!(
                "{shown} is owned by uid {} with mode {:04o}: not root's alone",
                s.uid, s.mode
            )));
        }
    }
    Ok(None)
}

fn judge(property: Property, p: &ElfProperties) -> Option<(bool, String)> {
    let yes_no = |tri: Tri, what: &str| match tri {
        Tri::Yes => Some((true, format!("{what} present"))),
        Tri::No => Some((false, format!("no {what}"))),
        Tri::NotApplicable => None,
    };
    match property {
        Property::Pie => Some((
            p.pie == Pie::Yes,
            format!("pie: {:?}", p.pie).to_lowercase(),
        )),
        Property::Relro => Some((
            p.relro == Relro::Full,
            format!("relro: {:?}", p.relro).to_lowercase(),
        )),
        Property::Nx => Some((
            p.nx,
            if p.nx {
                "stack not executable"
            } else {
                "executable or unmarked stack (PT_GNU_STACK)"
            }
            .into(),
        )),
        Property::Canary => yes_no(p.canary, "stack protector symbol"),
        Property::Fortify => yes_no(p.fortify, "fortified __*_chk call"),
        // Judged with the image by judge_search_path.
        Property::Rpath | Property::Runpath => None,
        Property::Textrel => Some((
            !p.textrel,
            if p.textrel {
                "text relocations (DT_TEXTREL/DF_TEXTREL)"
            } else {
                "no text relocations"
            }
            .into(),
        )),
        Property::Stripped => Some((
            p.stripped,
            if p.stripped {
                "stripped"
            } else {
                "has .symtab"
            }
            .into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rootfs::tests::MemFs;

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

    #[test]
    fn exceptions_name_one_file_with_a_reason() {
        let one = |path: &str, reason: &str| ElfException {
            path: path.into(),
            property: Property::Relro,
            reason: reason.into(),
        };
        assert!(check_exceptions(&[one("/lib/libc.so.6", "toolchain")]).is_ok());
        for bad in ["/usr/lib/*.so*", "libc.so.6", "/lib/libc.so.?"] {
            let err = check_exceptions(&[one(bad, "x")]).unwrap_err().to_string();
            assert!(err.contains("one file"), "{bad}: {err}");
        }
        assert!(check_exceptions(&[one("/lib/libc.so.6", " ")]).is_err());
    }

    #[test]
    fn search_paths_are_judged_by_the_folder_they_name() {
        let mut image = MemFs::default();
        image.file("/usr/lib/systemd/libsystemd-shared-257.so", 0o755, "elf");
        image.file("/usr/bin/app", 0o755, "elf");
        image.file("/usr/bin/plugins/p.so", 0o755, "elf");
        image.file("/tmp/x/lib.so", 0o644, "elf");
        image.files.get_mut("/tmp").unwrap().0.mode = 0o1777;
        image.file("/home/builder/lib/l.so", 0o644, "elf");
        image.files.get_mut("/home/builder").unwrap().0.uid = 1000;
        image.link("/lib", "usr/lib");
        let judge = |entries: &[&str]| {
            let entries: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
            judge_search_path("DT_RUNPATH", &entries, "/usr/bin/app", &image).unwrap()
        };
        assert!(judge(&[]).0);
        assert!(
            judge(&["/usr/lib/systemd"]).0,
            "{}",
            judge(&["/usr/lib/systemd"]).1
        );
        assert!(
            judge(&["/lib/systemd"]).0,
            "through the /lib -> usr/lib link"
        );
        assert!(judge(&["$ORIGIN/plugins"]).0);
        for bad in [
            "",
            "/usr/lib/systemd::/usr/lib",
            "$ORIGIN/../..",
            "/tmp/x",
            "/opt/lib",
            "/home/builder/lib",
            "lib",
            "$LIB/x",
            "/usr/bin/app",
        ] {
            let (ok, detail) = judge(&[bad]);
            assert!(!ok, "'{bad}' passed: {detail}");
        }
        assert!(judge(&["/tmp/x"]).1.contains("/tmp"));
    }

    fn props() -> ElfProperties {
        ElfProperties {
            kind: ElfKind::Executable,
            machine: "arm".into(),
            pie: Pie::Yes,
            interpreter: Some("/lib/ld-linux-armhf.so.3".into()),
            relro: Relro::Full,
            nx: true,
            canary: Tri::NotApplicable,
            fortify: Tri::No,
            fortified_calls: vec![],
            rpath: vec![],
            runpath: vec!["/opt/lib".into()],
            textrel: true,
            stripped: true,
            go: true,
            cgo: false,
        }
    }

    #[test]
    fn evaluation_skips_inapplicable_properties_and_honours_exceptions() {
        let image = MemFs::default();
        let rules = parse_rules(
            r#"
            [[rule]]
            property = "canary"
            applies_to = ["executable"]
            severity = "required"
            source = "elf-hardening"
            title = "stack protector"
            [[rule]]
            property = "textrel"
            applies_to = ["executable", "shared-library"]
            severity = "required"
            source = "elf-hardening"
            title = "no text relocations"
            [[rule]]
            property = "runpath"
            applies_to = ["shared-library"]
            severity = "required"
            source = "elf-hardening"
            title = "no RUNPATH"
            [[rule]]
            property = "fortify"
            applies_to = ["executable"]
            severity = "recommended"
            source = "elf-hardening"
            title = "FORTIFY_SOURCE"
            "#,
        )
        .unwrap()
        .rule;
        let exceptions = vec![ElfException {
            path: "/usr/bin/x".into(),
            property: Property::Fortify,
            reason: "test".into(),
        }];
        let findings = evaluate("/usr/bin/x", &props(), &rules, &exceptions, &image).unwrap();
        // canary: not applicable to pure Go; runpath: rule is for shared libraries only.
        let rules_seen: Vec<_> = findings.iter().map(|f| f.rule.as_str()).collect();
        assert_eq!(rules_seen, ["no text relocations", "FORTIFY_SOURCE"]);
        assert_eq!(findings[0].verdict, crate::report::Verdict::Fail);
        assert!(matches!(
            findings[1].verdict,
            crate::report::Verdict::Exception(_)
        ));
    }

    #[test]
    fn configuration_proves_what_the_toolchain_wrapper_adds() {
        let rules = parse_rules(
            &std::fs::read_to_string(
                crate::util::repo_root().join("configs/hardening/elf-rules.toml"),
            )
            .unwrap(),
        )
        .unwrap();
        let config = "BR2_SSP_STRONG=y\nBR2_PIC_PIE=y\nBR2_RELRO_FULL=y\nBR2_FORTIFY_SOURCE_3=y\n";
        let settings = crate::kconfig::parse(config, ".config").unwrap();
        let findings = evaluate_config(&rules.config, &settings);
        assert!(findings.len() >= 4);
        assert!(findings
            .iter()
            .all(|f| f.verdict == crate::report::Verdict::Pass));
        let weak = config.replace(
            "BR2_SSP_STRONG=y",
            "# BR2_SSP_STRONG is not set\nBR2_SSP_REGULAR=y",
        );
        let settings = crate::kconfig::parse(&weak, ".config").unwrap();
        let failed: Vec<_> = evaluate_config(&rules.config, &settings)
            .into_iter()
            .filter(|f| f.verdict == crate::report::Verdict::Fail)
            .map(|f| f.rule)
            .collect();
        assert_eq!(failed.len(), 1);
        assert!(failed[0].contains("stack protector"), "{failed:?}");
    }

    #[test]
    fn rule_table_rejects_unknown_properties() {
        let err = parse_rules(
            "[[rule]]\nproperty = \"aslr\"\napplies_to = [\"executable\"]\nseverity = \"required\"\nsource = \"x\"\ntitle = \"x\"\n",
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("aslr"));
    }
}
