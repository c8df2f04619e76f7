//! Reading a kernel's embedded build config (`CONFIG_IKCONFIG`) and checking
//! it against what Firecracker needs from a guest kernel.
//!
//! With `CONFIG_IKCONFIG=y` the kernel image carries its `.config` as a gzip
//! stream between the markers `IKCFG_ST` and `IKCFG_ED` (kernel/configs.c).
//! In an ELF vmlinux the markers are in the file itself; in a bzImage they
//! are inside the compressed payload, which [`vmlinux_from_bzimage`]
//! unpacks first.
//!
//! The requirement table follows Firecracker's docs/kernel-policy.md
//! ("Guest kernel configuration items") and docs/network-setup.md. Two boot
//! profiles are evaluated: **ACPI boot** (Firecracker ≥ 1.8 on x86_64
//! describes its virtio-mmio devices in the ACPI DSDT; the guest needs
//! `CONFIG_ACPI` and `CONFIG_PCI`) and **legacy boot** (devices passed as
//! `virtio_mmio.device=` on the command line; the guest needs
//! `CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES`). Firecracker's default command line
//! has `nomodule` and banger boots without an initrd by default, so every
//! item must be built in (`=y`); `=m` is reported as `module`.

use std::collections::BTreeMap;
use std::io::Read;

use serde::Serialize;

use crate::bzimage::vmlinux_from_bzimage;

/// Largest decompressed config accepted (real ones are ~300 KiB).
const MAX_CONFIG: u64 = 16 << 20;

const START: &[u8] = b"IKCFG_ST";

/// Why a kernel's config could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KconfigError {
    /// The file is neither an ELF vmlinux nor a bzImage with an extractable vmlinux.
    #[error("not a kernel image: {0}")]
    NotAKernel(String),
    /// No `IKCFG_ST` marker: the kernel was built without `CONFIG_IKCONFIG=y`.
    #[error(
        "the kernel has no embedded config (no IKCFG_ST marker); it must be built with \
         CONFIG_IKCONFIG=y to be checked"
    )]
    NoEmbeddedConfig,
    /// The marker is there but the gzip stream after it is unreadable.
    #[error("the embedded config after IKCFG_ST is not a readable gzip stream: {0}")]
    Corrupt(String),
}

/// The value of one config option.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum OptionValue {
    /// `=y`.
    Builtin,
    /// `=m`.
    Module,
    /// `# CONFIG_X is not set`.
    NotSet,
    /// Any other value (a string or a number), as written.
    Other(String),
}

/// A parsed kernel config: option name (without `CONFIG_`) → value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelConfig {
    options: BTreeMap<String, OptionValue>,
}

impl KernelConfig {
    /// Parse `.config` text: `CONFIG_X=y|m|"..."|N` and `# CONFIG_X is not set`;
    /// anything else (comments, blank lines, junk) is ignored.
    pub fn parse(text: &str) -> KernelConfig {
        let mut options = BTreeMap::new();
        for line in text.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("# CONFIG_") {
                if let Some(name) = rest.strip_suffix(" is not set") {
                    options.insert(name.to_string(), OptionValue::NotSet);
                }
            } else if let Some(rest) = line.strip_prefix("CONFIG_")
                && let Some((name, value)) = rest.split_once('=')
            {
                let v = match value {
                    "y" => OptionValue::Builtin,
                    "m" => OptionValue::Module,
                    "n" => OptionValue::NotSet,
                    other => OptionValue::Other(other.to_string()),
                };
                options.insert(name.to_string(), v);
            }
        }
        KernelConfig { options }
    }

    /// The value of `name` (without `CONFIG_`), if the config mentions it.
    pub fn get(&self, name: &str) -> Option<&OptionValue> {
        self.options.get(name)
    }

    /// How many options the config mentions.
    pub fn len(&self) -> usize {
        self.options.len()
    }

    /// Whether the config mentions no option at all.
    pub fn is_empty(&self) -> bool {
        self.options.is_empty()
    }
}

/// The embedded config text of a kernel image (ELF vmlinux or bzImage).
pub fn embedded_config(image: &[u8]) -> Result<String, KconfigError> {
    if let Some(text) = config_after_marker(image)? {
        return Ok(text);
    }
    if image.starts_with(b"\x7fELF") {
        return Err(KconfigError::NoEmbeddedConfig);
    }
    if image.get(0x202..0x206) != Some(b"HdrS") {
        return Err(KconfigError::NotAKernel(
            "neither an ELF vmlinux nor a bzImage (no HdrS magic at 0x202)".into(),
        ));
    }
    let (vmlinux, _) = vmlinux_from_bzimage(image).map_err(KconfigError::NotAKernel)?;
    config_after_marker(&vmlinux)?.ok_or(KconfigError::NoEmbeddedConfig)
}

/// The gunzipped text after the first `IKCFG_ST` in `d` that starts a
/// readable gzip stream, or `None` when the marker is absent (the error of
/// the last candidate when none is readable). The gzip member ends before
/// `IKCFG_ED`; trailing bytes are not read.
fn config_after_marker(d: &[u8]) -> Result<Option<String>, KconfigError> {
    let mut last = None;
    let mut from = 0;
    while let Some(at) = d[from..].windows(START.len()).position(|w| w == START) {
        let start = from + at + START.len();
        match gunzip_text(&d[start..]) {
            Ok(text) => return Ok(Some(text)),
            Err(e) => last = Some(e),
        }
        from = start;
    }
    last.map_or(Ok(None), Err)
}

fn gunzip_text(gz: &[u8]) -> Result<String, KconfigError> {
    let mut text = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .take(MAX_CONFIG + 1)
        .read_to_end(&mut text)
        .map_err(|e| KconfigError::Corrupt(e.to_string()))?;
    if text.len() as u64 > MAX_CONFIG {
        return Err(KconfigError::Corrupt(format!(
            "larger than {} MiB",
            MAX_CONFIG >> 20
        )));
    }
    String::from_utf8(text).map_err(|_| KconfigError::Corrupt("not UTF-8 text".into()))
}

/// The options (without `CONFIG_`) either boot profile checks, in report order.
pub fn required_options() -> impl Iterator<Item = &'static str> {
    REQUIREMENTS.iter().map(|r| r.name)
}

/// Which boot profiles need an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Needed {
    Both,
    Acpi,
    Legacy,
}

/// One required option: name (without `CONFIG_`), why, and for which profile.
struct Requirement {
    name: &'static str,
    why: &'static str,
    needed: Needed,
}

const fn req(name: &'static str, why: &'static str, needed: Needed) -> Requirement {
    Requirement { name, why, needed }
}

/// Firecracker's guest-kernel requirements (docs/kernel-policy.md) plus what
/// banger relies on (`ip=`, `SendCtrlAltDel`, checking the config itself).
const REQUIREMENTS: &[Requirement] = &[
    req(
        "VIRTIO_MMIO",
        "virtio-mmio transport (all devices)",
        Needed::Both,
    ),
    req(
        "VIRTIO_BLK",
        "virtio block: root and work disks",
        Needed::Both,
    ),
    req("VIRTIO_NET", "virtio network", Needed::Both),
    req("VSOCKETS", "vsock sockets (guest agent)", Needed::Both),
    req("VIRTIO_VSOCKETS", "virtio vsock transport", Needed::Both),
    req("EXT4_FS", "ext4 root filesystem", Needed::Both),
    req("SERIAL_8250", "8250 serial port", Needed::Both),
    req(
        "SERIAL_8250_CONSOLE",
        "console on the 8250 serial port",
        Needed::Both,
    ),
    req("PRINTK", "kernel messages on the console", Needed::Both),
    req("IP_PNP", "`ip=` on the kernel command line", Needed::Both),
    req(
        "SERIO_I8042",
        "i8042 controller (SendCtrlAltDel)",
        Needed::Both,
    ),
    req(
        "KEYBOARD_ATKBD",
        "AT keyboard (SendCtrlAltDel)",
        Needed::Both,
    ),
    req("IKCONFIG", "embedded config (this check)", Needed::Both),
    req(
        "ACPI",
        "ACPI tables describe the virtio-mmio devices",
        Needed::Acpi,
    ),
    req("PCI", "needed for ACPI initialisation", Needed::Acpi),
    req(
        "VIRTIO_MMIO_CMDLINE_DEVICES",
        "devices from `virtio_mmio.device=` arguments",
        Needed::Legacy,
    ),
];

/// The state of one required option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    /// Built in (`=y`).
    Ok,
    /// Built as a module (`=m`): not usable with `nomodule` and no initrd.
    Module,
    /// Not set, or not mentioned at all.
    Missing,
}

impl ItemStatus {
    /// `ok`, `module` or `missing`.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemStatus::Ok => "ok",
            ItemStatus::Module => "module",
            ItemStatus::Missing => "missing",
        }
    }
}

/// One line of a profile's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    /// Full option name, `CONFIG_…`.
    pub option: String,
    /// What it is for.
    pub why: String,
    /// Its state in the checked kernel.
    pub status: ItemStatus,
}

/// A boot profile's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProfileReport {
    /// `acpi` or `legacy`.
    pub profile: String,
    /// Human description.
    pub title: String,
    /// Every required item, in table order.
    pub items: Vec<Item>,
    /// Whether every item is built in.
    pub satisfied: bool,
}

impl ProfileReport {
    /// The items that are not `ok`.
    pub fn problems(&self) -> impl Iterator<Item = &Item> {
        self.items.iter().filter(|i| i.status != ItemStatus::Ok)
    }
}

/// The result of checking a kernel config against both boot profiles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelCheck {
    /// ACPI boot, then legacy boot.
    pub profiles: Vec<ProfileReport>,
    /// Whether at least one profile is fully satisfied.
    pub bootable: bool,
}

impl KernelCheck {
    /// One line: which profiles are ready and what the others miss.
    pub fn verdict(&self) -> String {
        let parts: Vec<String> = self
            .profiles
            .iter()
            .map(|p| {
                if p.satisfied {
                    format!("{}: ready", p.title)
                } else {
                    let missing: Vec<String> = p
                        .problems()
                        .map(|i| format!("{} ({})", i.option, i.status.as_str()))
                        .collect();
                    format!("{}: not ready, needs {}", p.title, missing.join(", "))
                }
            })
            .collect();
        parts.join("; ")
    }
}

/// Check `config` against Firecracker's guest-kernel requirements.
pub fn check(config: &KernelConfig) -> KernelCheck {
    let profile = |key: &str, title: &str, want: Needed| {
        let items: Vec<Item> = REQUIREMENTS
            .iter()
            .filter(|r| r.needed == Needed::Both || r.needed == want)
            .map(|r| Item {
                option: format!("CONFIG_{}", r.name),
                why: r.why.to_string(),
                status: match config.get(r.name) {
                    Some(OptionValue::Builtin) => ItemStatus::Ok,
                    Some(OptionValue::Module) => ItemStatus::Module,
                    _ => ItemStatus::Missing,
                },
            })
            .collect();
        let satisfied = items.iter().all(|i| i.status == ItemStatus::Ok);
        ProfileReport {
            profile: key.to_string(),
            title: title.to_string(),
            items,
            satisfied,
        }
    };
    let profiles = vec![
        profile(
            "acpi",
            "ACPI boot (Firecracker >= 1.8, x86_64)",
            Needed::Acpi,
        ),
        profile(
            "legacy",
            "legacy boot (virtio_mmio.device= arguments)",
            Needed::Legacy,
        ),
    ];
    let bootable = profiles.iter().any(|p| p.satisfied);
    KernelCheck { profiles, bootable }
}

/// Read the embedded config of a kernel image and check it.
pub fn check_image(image: &[u8]) -> Result<KernelCheck, KconfigError> {
    let text = embedded_config(image)?;
    Ok(check(&KernelConfig::parse(&text)))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// Every required option built in.
    pub(crate) fn full_config() -> String {
        let mut s = String::from("#\n# Automatically generated file; DO NOT EDIT.\n#\n");
        for o in required_options() {
            s.push_str(&format!("CONFIG_{o}=y\n"));
        }
        s.push_str("CONFIG_LOCALVERSION=\"-test\"\n");
        s
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// A fake ELF vmlinux: ELF magic, filler, the markers around a gzipped config.
    pub(crate) fn vmlinux_with(config: &str) -> Vec<u8> {
        let mut d = b"\x7fELF\x02\x01\x01".to_vec();
        d.extend_from_slice(&[0u8; 500]);
        d.extend_from_slice(b"IKCFG_ST");
        d.extend_from_slice(&gzip(config.as_bytes()));
        d.extend_from_slice(b"IKCFG_ED");
        d.extend_from_slice(&[0xAAu8; 300]);
        d
    }

    /// A bzImage whose gzip payload is `vmlinux` (boot protocol 2.15).
    fn bzimage_with(vmlinux: &[u8]) -> Vec<u8> {
        let payload = gzip(vmlinux);
        let setup_sects = 1u8;
        let pm_start = (setup_sects as usize + 1) * 512;
        let payload_offset = 0x100usize;
        let mut d = vec![0u8; pm_start + payload_offset];
        d[0x1f1] = setup_sects;
        d[0x202..0x206].copy_from_slice(b"HdrS");
        d[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        d[0x248..0x24c].copy_from_slice(&(payload_offset as u32).to_le_bytes());
        d[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        d.extend_from_slice(&payload);
        d.extend_from_slice(&[0u8; 64]);
        d
    }

    #[test]
    fn parses_values_and_not_set() {
        let c = KernelConfig::parse(
            "CONFIG_A=y\nCONFIG_B=m\n# CONFIG_C is not set\nCONFIG_D=\"x y\"\n\
             CONFIG_E=0x10\n# comment\njunk=y\nCONFIG_F=n\n",
        );
        assert_eq!(c.get("A"), Some(&OptionValue::Builtin));
        assert_eq!(c.get("B"), Some(&OptionValue::Module));
        assert_eq!(c.get("C"), Some(&OptionValue::NotSet));
        assert_eq!(c.get("D"), Some(&OptionValue::Other("\"x y\"".into())));
        assert_eq!(c.get("E"), Some(&OptionValue::Other("0x10".into())));
        assert_eq!(c.get("F"), Some(&OptionValue::NotSet));
        assert_eq!(c.get("junk"), None);
        assert_eq!(c.len(), 6);
    }

    #[test]
    fn full_config_satisfies_both_profiles() {
        let r = check_image(&vmlinux_with(&full_config())).unwrap();
        assert!(r.bootable);
        assert_eq!(r.profiles.len(), 2);
        assert!(r.profiles.iter().all(|p| p.satisfied), "{r:?}");
        assert!(r.verdict().contains("ready"));
    }

    #[test]
    fn modules_and_missing_items_are_reported_per_profile() {
        let cfg = full_config()
            .replace("CONFIG_VIRTIO_BLK=y", "CONFIG_VIRTIO_BLK=m")
            .replace(
                "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y\n",
                "# CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES is not set\n",
            )
            .replace("CONFIG_ACPI=y\n", "");
        let r = check_image(&vmlinux_with(&cfg)).unwrap();
        assert!(!r.bootable);
        let acpi = &r.profiles[0];
        let legacy = &r.profiles[1];
        assert_eq!(acpi.profile, "acpi");
        let status = |p: &ProfileReport, o: &str| {
            p.items
                .iter()
                .find(|i| i.option == o)
                .map(|i| i.status)
                .unwrap()
        };
        assert_eq!(status(acpi, "CONFIG_VIRTIO_BLK"), ItemStatus::Module);
        assert_eq!(status(acpi, "CONFIG_ACPI"), ItemStatus::Missing);
        assert_eq!(status(acpi, "CONFIG_PCI"), ItemStatus::Ok);
        assert!(
            acpi.items
                .iter()
                .all(|i| i.option != "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES")
        );
        assert_eq!(
            status(legacy, "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES"),
            ItemStatus::Missing
        );
        assert!(legacy.items.iter().all(|i| i.option != "CONFIG_ACPI"));
        let v = r.verdict();
        assert!(v.contains("CONFIG_VIRTIO_BLK (module)"), "{v}");
        assert!(v.contains("CONFIG_ACPI (missing)"), "{v}");
    }

    #[test]
    fn one_satisfied_profile_is_bootable() {
        let cfg = full_config().replace("CONFIG_PCI=y\n", "# CONFIG_PCI is not set\n");
        let r = check_image(&vmlinux_with(&cfg)).unwrap();
        assert!(!r.profiles[0].satisfied);
        assert!(r.profiles[1].satisfied);
        assert!(r.bootable);
    }

    #[test]
    fn reads_the_config_inside_a_bzimage() {
        let cfg = full_config().replace("CONFIG_ACPI=y\n", "");
        let bz = bzimage_with(&vmlinux_with(&cfg));
        // The markers are only inside the compressed payload.
        assert!(!bz.windows(8).any(|w| w == b"IKCFG_ST"));
        assert_eq!(embedded_config(&bz).unwrap(), cfg);
        let r = check_image(&bz).unwrap();
        assert!(!r.profiles[0].satisfied);
        assert!(r.profiles[1].satisfied);
    }

    #[test]
    fn a_stray_marker_before_the_real_one_is_skipped() {
        let mut d = b"\x7fELF\x02\x01\x01".to_vec();
        d.extend_from_slice(b"string mentioning IKCFG_ST in the kernel's text\0");
        d.extend_from_slice(&vmlinux_with(&full_config()));
        assert_eq!(embedded_config(&d).unwrap(), full_config());
    }

    #[test]
    fn no_marker_means_no_embedded_config() {
        let mut elf = b"\x7fELF\x02\x01\x01".to_vec();
        elf.extend_from_slice(&[0u8; 1000]);
        assert_eq!(embedded_config(&elf), Err(KconfigError::NoEmbeddedConfig));
        let bz = bzimage_with(&elf);
        assert_eq!(embedded_config(&bz), Err(KconfigError::NoEmbeddedConfig));
        let msg = KconfigError::NoEmbeddedConfig.to_string();
        assert!(msg.contains("CONFIG_IKCONFIG=y"), "{msg}");
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(matches!(
            embedded_config(b"hello world"),
            Err(KconfigError::NotAKernel(_))
        ));
        assert!(matches!(
            embedded_config(b""),
            Err(KconfigError::NotAKernel(_))
        ));
        let mut d = b"\x7fELF".to_vec();
        d.extend_from_slice(b"IKCFG_STnot gzip at allIKCFG_ED");
        assert!(matches!(embedded_config(&d), Err(KconfigError::Corrupt(_))));
        // Truncated gzip stream.
        let full = vmlinux_with(&full_config());
        let at = full.windows(8).position(|w| w == b"IKCFG_ST").unwrap();
        assert!(matches!(
            embedded_config(&full[..at + 20]),
            Err(KconfigError::Corrupt(_))
        ));
    }

    /// Debian's cloud kernel from the CI cache, when present: no panic, a
    /// clear answer (its content is not asserted).
    #[test]
    fn debian_cloud_kernel_when_cached() {
        let dir = std::path::Path::new("/var/cache/banger-ci/kernel/boot");
        let Ok(entries) = std::fs::read_dir(dir) else {
            eprintln!(
                "SKIP debian_cloud_kernel_when_cached: {} absent",
                dir.display()
            );
            return;
        };
        let mut seen = false;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("config-") {
                // The same kernel's .config, shipped beside it: what the
                // check would say if the config were embedded.
                let text = std::fs::read_to_string(e.path()).unwrap();
                let r = check(&KernelConfig::parse(&text));
                eprintln!("{name} (file beside the kernel): {}", r.verdict());
                continue;
            }
            if !name.starts_with("vmlinuz-") {
                continue;
            }
            seen = true;
            let data = std::fs::read(e.path()).unwrap();
            match check_image(&data) {
                Ok(r) => {
                    eprintln!("{name}: {}", r.verdict());
                    for p in &r.profiles {
                        for i in p.problems() {
                            eprintln!("  {} {} {}", p.profile, i.status.as_str(), i.option);
                        }
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    eprintln!("{name}: {msg}");
                    assert!(!msg.is_empty());
                }
            }
        }
        if !seen {
            eprintln!(
                "SKIP debian_cloud_kernel_when_cached: no vmlinuz-* in {}",
                dir.display()
            );
        }
    }
}
