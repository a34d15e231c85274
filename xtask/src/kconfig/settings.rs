//! Kconfig settings: parsing `.config`, defconfig and fragment files, merging them in order,
//! rendering them back, and finding every requested setting a resolved configuration dropped or
//! changed. Pure logic.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::{bail, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Yes,
    Module,
    /// `# SYM is not set` or `SYM=n`.
    No,
    /// A quoted string, unescaped.
    Str(String),
    /// An int or hex literal, kept as written.
    Num(String),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Yes => f.write_str("y"),
            Value::Module => f.write_str("m"),
            Value::No => f.write_str("is not set"),
            Value::Str(s) => write!(f, "\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")),
            Value::Num(n) => f.write_str(n),
        }
    }
}

/// One `SYM=value` (or `# SYM is not set`) line and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub symbol: String,
    pub value: Value,
    /// `file:line`, for messages.
    pub origin: String,
}

/// Parse a Kconfig file (`.config`, defconfig or fragment). `name` labels the origins.
pub fn parse(text: &str, name: &str) -> Result<Vec<Setting>> {
    let mut settings = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let origin = format!("{name}:{}", index + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            if let Some(symbol) = comment.trim().strip_suffix(" is not set") {
                if is_symbol(symbol) {
                    settings.push(Setting {
                        symbol: symbol.into(),
                        value: Value::No,
                        origin,
                    });
                }
            }
            continue;
        }
        let Some((symbol, value)) = line.split_once('=') else {
            bail!("{origin}: expected SYMBOL=value or '# SYMBOL is not set', found '{line}'");
        };
        if !is_symbol(symbol) {
            bail!("{origin}: '{symbol}' is not a Kconfig symbol name");
        }
        let value = parse_value(value).map_err(|why| anyhow::anyhow!("{origin}: {why}"))?;
        settings.push(Setting {
            symbol: symbol.into(),
            value,
            origin,
        });
    }
    Ok(settings)
}

fn is_symbol(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(v: &str) -> std::result::Result<Value, String> {
    match v {
        "y" => Ok(Value::Yes),
        "m" => Ok(Value::Module),
        "n" => Ok(Value::No),
        // What Kconfig writes for a visible int or hex symbol that has no default and no value
        // (U-Boot's ENV_ADDR_REDUND with a flash environment, for one); it reads it back as unset.
        "" => Ok(Value::Num(String::new())),
        _ if v.starts_with('"') => {
            let inner = v
                .strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .filter(|_| v.len() >= 2)
                .ok_or_else(|| format!("unterminated string {v}"))?;
            let mut out = String::new();
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    out.push(
                        chars
                            .next()
                            .ok_or_else(|| format!("dangling escape in {v}"))?,
                    );
                } else {
                    out.push(c);
                }
            }
            Ok(Value::Str(out))
        }
        _ if is_number(v) => Ok(Value::Num(v.into())),
        _ => Err(format!("'{v}' is not y, m, n, a quoted string or a number")),
    }
}

fn is_number(v: &str) -> bool {
    let digits = v.strip_prefix('-').unwrap_or(v);
    if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit())
    } else {
        !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
    }
}

/// The last setting of each symbol wins, as in `merge_config.sh` (a fragment's line replaces the
/// earlier one); order of first appearance kept.
pub fn merge<'a>(layers: impl IntoIterator<Item = &'a [Setting]>) -> Vec<Setting> {
    let mut order: Vec<String> = Vec::new();
    let mut latest: BTreeMap<String, Setting> = BTreeMap::new();
    for layer in layers {
        for s in layer {
            if latest.insert(s.symbol.clone(), s.clone()).is_none() {
                order.push(s.symbol.clone());
            }
        }
    }
    order
        .into_iter()
        .map(|sym| {
            latest
                .remove(&sym)
                .expect("every ordered symbol was inserted")
        })
        .collect()
}

/// Render settings back to Kconfig text (for a merged `.config` fed to `olddefconfig`).
pub fn render(settings: &[Setting]) -> String {
    settings
        .iter()
        .map(|s| match s.value {
            Value::No => format!("# {} is not set\n", s.symbol),
            ref v => format!("{}={v}\n", s.symbol),
        })
        .collect()
}

/// A resolved configuration, looked up by symbol.
#[derive(Debug, Default, Clone)]
pub struct Resolved(BTreeMap<String, Value>);

impl Resolved {
    pub fn from_settings(settings: Vec<Setting>) -> Self {
        Resolved(settings.into_iter().map(|s| (s.symbol, s.value)).collect())
    }

    pub fn parse(text: &str, name: &str) -> Result<Self> {
        Ok(Self::from_settings(parse(text, name)?))
    }

    /// The value, with a symbol absent from the file meaning "not set" for tristates/bools
    /// only when the caller treats it so; `None` means the symbol does not appear at all.
    pub fn get(&self, symbol: &str) -> Option<&Value> {
        self.0.get(symbol)
    }

    /// `n` and absence both mean the option is off.
    pub fn is_enabled(&self, symbol: &str) -> bool {
        matches!(self.get(symbol), Some(Value::Yes | Value::Module))
    }
}

/// A requested setting that did not survive resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub requested: Setting,
    /// What the resolved file says; `None` when the symbol is absent (unknown or unmet deps).
    pub resolved: Option<Value>,
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let wanted = match &self.requested.value {
            Value::No => format!("# {} is not set", self.requested.symbol),
            v => format!("{}={v}", self.requested.symbol),
        };
        match &self.resolved {
            None => write!(
                f,
                "{}: {wanted} was dropped (unknown symbol, or its dependencies are not met)",
                self.requested.origin
            ),
            Some(got) => write!(f, "{}: {wanted} resolved to {got}", self.requested.origin),
        }
    }
}

/// Every requested setting whose value the resolved configuration does not hold.
/// Asking for "not set" is satisfied by an absent symbol (Kconfig omits invisible ones).
pub fn dropped(requested: &[Setting], resolved: &Resolved) -> Vec<Dropped> {
    requested
        .iter()
        .filter_map(|want| {
            let got = resolved.get(&want.symbol);
            let kept = match (&want.value, got) {
                (Value::No, None | Some(Value::No)) => true,
                (w, Some(g)) => w == g,
                (_, None) => false,
            };
            (!kept).then(|| Dropped {
                requested: want.clone(),
                resolved: got.cloned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESOLVED: &str = "\
#
# Automatically generated file; DO NOT EDIT.
#
CONFIG_SECCOMP=y
CONFIG_OVERLAY_FS=m
# CONFIG_DEVMEM is not set
CONFIG_CMDLINE=\"console=ttySAC2,115200n8 quote=\\\"x\\\"\"
CONFIG_NR_CPUS=8
CONFIG_PHYS_OFFSET=0x40000000
";

    #[test]
    fn parses_every_value_kind() {
        let s = parse(RESOLVED, ".config").unwrap();
        assert_eq!(s.len(), 6);
        assert_eq!(s[0].value, Value::Yes);
        assert_eq!(s[1].value, Value::Module);
        assert_eq!(
            s[2],
            Setting {
                symbol: "CONFIG_DEVMEM".into(),
                value: Value::No,
                origin: ".config:6".into()
            }
        );
        assert_eq!(
            s[3].value,
            Value::Str("console=ttySAC2,115200n8 quote=\"x\"".into())
        );
        assert_eq!(s[4].value, Value::Num("8".into()));
        assert_eq!(s[5].value, Value::Num("0x40000000".into()));
    }

    #[test]
    fn an_int_or_hex_symbol_without_a_value_is_read_and_rendered_as_kconfig_wrote_it() {
        let s = parse("CONFIG_ENV_ADDR_REDUND=\n", ".config").unwrap();
        assert_eq!(s[0].value, Value::Num(String::new()));
        assert_eq!(render(&s), "CONFIG_ENV_ADDR_REDUND=\n");
    }

    #[test]
    fn rejects_malformed_lines_with_their_place() {
        let err = parse("CONFIG_A=y\nCONFIG_B=maybe\n", "frag")
            .unwrap_err()
            .to_string();
        assert!(err.contains("frag:2"), "{err}");
        assert!(parse("CONFIG_A\n", "frag").is_err());
        assert!(parse("CONFIG_A=\"open\n", "frag").is_err());
    }

    #[test]
    fn string_values_round_trip_through_render() {
        let s = parse(RESOLVED, "x").unwrap();
        assert_eq!(
            parse(&render(&s), "y")
                .unwrap()
                .iter()
                .map(|s| &s.value)
                .collect::<Vec<_>>(),
            s.iter().map(|s| &s.value).collect::<Vec<_>>()
        );
    }

    #[test]
    fn later_layers_win_and_order_is_kept() {
        let base = parse("CONFIG_A=y\nCONFIG_B=y\n", "base").unwrap();
        let frag = parse("# CONFIG_A is not set\nCONFIG_C=y\n", "frag").unwrap();
        let merged = merge([base.as_slice(), frag.as_slice()]);
        let syms: Vec<_> = merged
            .iter()
            .map(|s| (s.symbol.as_str(), s.value.clone()))
            .collect();
        assert_eq!(
            syms,
            vec![
                ("CONFIG_A", Value::No),
                ("CONFIG_B", Value::Yes),
                ("CONFIG_C", Value::Yes)
            ]
        );
        assert_eq!(merged[0].origin, "frag:1");
    }

    #[test]
    fn finds_dropped_and_changed_settings() {
        let resolved = Resolved::parse(RESOLVED, ".config").unwrap();
        let wanted = parse(
            "CONFIG_SECCOMP=y\nCONFIG_OVERLAY_FS=y\n# CONFIG_KEXEC is not set\nCONFIG_BOGUS_SYMBOL=y\n# CONFIG_SECCOMP is not set\n",
            "frag",
        )
        .unwrap();
        let d = dropped(&wanted, &resolved);
        let names: Vec<_> = d.iter().map(|d| d.requested.symbol.as_str()).collect();
        assert_eq!(
            names,
            vec!["CONFIG_OVERLAY_FS", "CONFIG_BOGUS_SYMBOL", "CONFIG_SECCOMP"]
        );
        assert_eq!(d[0].resolved, Some(Value::Module));
        assert!(d[1]
            .to_string()
            .contains("frag:4: CONFIG_BOGUS_SYMBOL=y was dropped"));
        assert!(resolved.is_enabled("CONFIG_OVERLAY_FS"));
        assert!(!resolved.is_enabled("CONFIG_DEVMEM"));
    }
}
