//! `banger completions SHELL` and the hidden `banger __complete vms|images`.
//!
//! The script is clap_complete's (subcommands and options) plus a small
//! shell function that completes VM and image names by calling
//! `banger __complete vms|images` at completion time. Which positions take
//! a VM or an image is read from the command tree ([`name_slots`]): a
//! positional argument whose help starts with "VM name" or "Image name",
//! and the `--image` option.

use banger_api::{Image, Request, Vm};
use clap::CommandFactory;
use clap_complete::Shell;

use crate::args::Cli;
use crate::args_verbs::{CompleteArgs, CompleteWhat};
use crate::context::Ctx;
use crate::error::CliError;

/// Print the completion script for `shell`.
pub fn run(ctx: &mut Ctx, shell: Shell) -> Result<(), CliError> {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "banger", ctx.out);
    let slots = name_slots(&cmd);
    let extra = match shell {
        Shell::Bash => bash(&slots),
        Shell::Zsh => zsh(&slots),
        Shell::Fish => fish(&slots),
        _ => String::new(),
    };
    ctx.out.write_all(extra.as_bytes())?;
    Ok(())
}

/// `__complete vms|images`: the names, one per line.
pub fn names(ctx: &mut Ctx, a: CompleteArgs) -> Result<(), CliError> {
    let mut client = ctx.connect()?;
    let names: Vec<String> = match a.what {
        CompleteWhat::Vms => client
            .call::<Vec<Vm>>(Request::VmList)?
            .into_iter()
            .map(|v| v.name)
            .collect(),
        CompleteWhat::Images => client
            .call::<Vec<Image>>(Request::ImageList)?
            .into_iter()
            .map(|i| i.name)
            .collect(),
    };
    for n in names {
        writeln!(ctx.out, "{n}")?;
    }
    Ok(())
}

/// A command position that takes names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// The subcommand words (`vm start`), aliases included as their own slots.
    pub path: String,
    /// `vms` or `images`.
    pub kind: &'static str,
    /// Takes several names (`vm start a b c`).
    pub many: bool,
}

/// Every subcommand position whose first positional argument is a VM or
/// image name.
pub fn name_slots(cmd: &clap::Command) -> Vec<Slot> {
    let mut out = Vec::new();
    walk(cmd, &[], &mut out);
    out
}

fn walk(cmd: &clap::Command, path: &[String], out: &mut Vec<Slot>) {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let names: Vec<String> = std::iter::once(sub.get_name().to_string())
            .chain(sub.get_visible_aliases().map(str::to_string))
            .collect();
        for name in names {
            let mut p = path.to_vec();
            p.push(name);
            if let Some(arg) = sub.get_positionals().next() {
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                let kind = if help.starts_with("VM name") {
                    Some("vms")
                } else if help.starts_with("Image name or id") {
                    Some("images")
                } else {
                    None
                };
                if let Some(kind) = kind {
                    let many = arg.get_num_args().is_some_and(|n| n.max_values() > 1);
                    out.push(Slot {
                        path: p.join(" "),
                        kind,
                        many,
                    });
                }
            }
            walk(sub, &p, out);
        }
    }
}

/// The patterns (`"vm start"|"vm start "*`) of the slots of `kind`.
fn patterns(slots: &[Slot], kind: &str, quote: char) -> Vec<String> {
    slots
        .iter()
        .filter(|s| s.kind == kind)
        .flat_map(|s| {
            let exact = format!("{quote}{}{quote}", s.path);
            if s.many {
                vec![exact, format!("{quote}{} {quote}*", s.path)]
            } else {
                vec![exact]
            }
        })
        .collect()
}

/// The `case` patterns of the VM and the image slots, for bash and zsh.
fn case_patterns(slots: &[Slot]) -> (String, String) {
    (
        patterns(slots, "vms", '"').join("|"),
        patterns(slots, "images", '"').join("|"),
    )
}

fn bash(slots: &[Slot]) -> String {
    let (vms, images) = case_patterns(slots);
    format!(
        r#"
# VM and image names, asked from bangerd at completion time.
_banger_names() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} prev=${{COMP_WORDS[COMP_CWORD-1]}} kind="" i
    local -a words=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        [[ ${{COMP_WORDS[i]}} == -* ]] || words+=("${{COMP_WORDS[i]}}")
    done
    if [[ $prev == --image ]]; then
        kind=images
    elif [[ $cur != -* ]]; then
        case "${{words[*]}}" in
            {vms}) kind=vms ;;
            {images}) kind=images ;;
        esac
    fi
    if [[ -n $kind ]]; then
        COMPREPLY=($(compgen -W "$(banger __complete "$kind" 2>/dev/null)" -- "$cur"))
        return 0
    fi
    _banger "$@"
}}
complete -F _banger_names -o bashdefault -o default banger
"#
    )
}

fn zsh(slots: &[Slot]) -> String {
    let (vms, images) = case_patterns(slots);
    format!(
        r#"
# VM and image names, asked from bangerd at completion time.
_banger_names() {{
    local -a w names
    local x kind=""
    for x in ${{words[2,CURRENT-1]}}; do
        [[ $x == -* ]] || w+=("$x")
    done
    if [[ ${{words[CURRENT-1]}} == --image ]]; then
        kind=images
    elif [[ ${{words[CURRENT]}} != -* ]]; then
        case "${{w[*]}}" in
            ({vms}) kind=vms ;;
            ({images}) kind=images ;;
        esac
    fi
    if [[ -n $kind ]]; then
        names=(${{(f)"$(banger __complete $kind 2>/dev/null)"}})
        compadd -a names
        return
    fi
    _banger "$@"
}}
compdef _banger_names banger
"#
    )
}

fn fish(slots: &[Slot]) -> String {
    format!(
        r#"
# VM and image names, asked from bangerd at completion time.
function __banger_names_at
    set -l toks (commandline -opc)
    set -e toks[1]
    if test "$argv[1]" = images; and test "$toks[-1]" = --image
        return 0
    end
    set -l w
    for t in $toks
        string match -q -- '-*' $t; or set -a w $t
    end
    set -l path (string join ' ' $w)
    switch "$path"
        case {vms}
            test "$argv[1]" = vms
        case {images}
            test "$argv[1]" = images
        case '*'
            return 1
    end
end
complete -c banger -n '__banger_names_at vms' -f -a '(banger __complete vms 2>/dev/null)'
complete -c banger -n '__banger_names_at images' -f -a '(banger __complete images 2>/dev/null)'
"#,
        vms = patterns(slots, "vms", '\'').join(" "),
        images = patterns(slots, "images", '\'').join(" "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_cover_the_name_taking_commands() {
        let slots = name_slots(&Cli::command());
        let find = |p: &str| slots.iter().find(|s| s.path == p).cloned();
        for (path, kind, many) in [
            ("vm start", "vms", true),
            ("vm stop", "vms", true),
            ("vm delete", "vms", true),
            ("vm rm", "vms", true),
            ("vm show", "vms", false),
            ("vm ssh", "vms", false),
            ("shell", "vms", false),
            ("workspace prepare", "vms", false),
            ("image show", "images", false),
            ("image delete", "images", false),
        ] {
            let s = find(path).unwrap_or_else(|| panic!("no slot for {path}: {slots:?}"));
            assert_eq!((s.kind, s.many), (kind, many), "{path}");
        }
        assert!(find("vm create").is_none(), "a new name is not completed");
        assert!(find("vm cp").is_none());
    }

    fn script(shell: &str) -> String {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = crate::run(
            ["banger", "completions", shell],
            &mut out,
            &mut err,
            crate::Term::default(),
        );
        assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
        String::from_utf8(out).unwrap()
    }

    /// Run the bash script's completion function for `line` with a fake
    /// `banger` on PATH whose `__complete` prints fixed names.
    fn bash_complete(line: &[&str]) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("banger");
        std::fs::write(
            &fake,
            "#!/bin/sh\ncase \"$2\" in vms) printf 'dev\\nweb\\n';; images) printf 'base\\n';; esac\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let file = dir.path().join("banger.bash");
        std::fs::write(&file, script("bash")).unwrap();
        let words: Vec<String> = line.iter().map(|w| format!("{w:?}")).collect();
        let prog = format!(
            "source {f:?}\nCOMP_WORDS=({w})\nCOMP_CWORD={c}\nCOMP_LINE=\"${{COMP_WORDS[*]}}\"\nCOMP_POINT=${{#COMP_LINE}}\n_banger_names banger \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
            f = file.display().to_string(),
            w = words.join(" "),
            c = line.len() - 1,
        );
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(prog)
            .env("PATH", format!("{}:/usr/bin:/bin", dir.path().display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn bash_completes_vm_and_image_names_from_the_daemon() {
        if std::process::Command::new("bash")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("SKIP bash_completes_vm_and_image_names_from_the_daemon: no bash");
            return;
        }
        assert_eq!(
            bash_complete(&["banger", "vm", "start", ""]),
            ["dev", "web"]
        );
        assert_eq!(
            bash_complete(&["banger", "vm", "delete", "dev", "w"]),
            ["web"],
            "several names"
        );
        assert_eq!(bash_complete(&["banger", "shell", "d"]), ["dev"]);
        assert_eq!(bash_complete(&["banger", "image", "show", ""]), ["base"]);
        assert_eq!(
            bash_complete(&["banger", "vm", "create", "x", "--image", ""]),
            ["base"]
        );
        // Elsewhere clap's own completion answers (subcommands).
        let subs = bash_complete(&["banger", "vm", "st"]);
        assert!(subs.contains(&"start".to_string()), "{subs:?}");
        assert!(!subs.contains(&"dev".to_string()), "{subs:?}");
    }

    #[test]
    fn every_script_asks_for_names() {
        for shell in ["bash", "zsh", "fish"] {
            let s = script(shell);
            assert!(s.contains("banger __complete"), "{shell}");
            assert!(
                s.contains("kind=vms") || s.contains("__banger_names_at vms"),
                "{shell}"
            );
            assert!(s.contains("vm start"), "{shell}");
        }
        let zsh = script("zsh");
        assert!(zsh.contains("compdef _banger_names banger"));
        let fish = script("fish");
        assert!(fish.contains("case 'vm start' 'vm start '*"), "{fish}");
    }
}
