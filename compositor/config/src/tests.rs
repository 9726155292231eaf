use super::*;

const MINIMAL: &str = r##"[[vm]]
name = "work"
color = "#3060ff"
[[vm]]
name = "banking"
color = "#2ecc71"
"##;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/cfg/config.toml"))
}

fn error(text: &str) -> String {
    parse(text)
        .expect_err("config should be rejected")
        .to_string()
}

#[test]
fn minimal_issue_config_is_valid() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.vms.len(), 2);
    assert_eq!(c.vms[0].name, "work");
    assert_eq!(c.vms[0].color, Color::rgb(0x30, 0x60, 0xff));
    assert_eq!(c.vms[1].color.to_string(), "#2ecc71");
    assert_eq!(c.headless, HeadlessConfig::default());
    assert_eq!(c.bindings.len(), DEFAULT_BINDINGS.len());
}

#[test]
fn example_config_is_valid() {
    let c = parse(EXAMPLE_CONFIG).unwrap();
    assert_eq!(c.vms.len(), 2);
    let spawn = c
        .bindings
        .iter()
        .find(|b| b.action.name() == "spawn")
        .unwrap();
    assert_eq!(spawn.combo.to_string(), "Super+Return");
    assert_eq!(spawn.action, Action::Spawn("foot".into()));
}

#[test]
fn empty_file_gives_defaults() {
    let c = parse("").unwrap();
    assert!(c.vms.is_empty());
    assert_eq!(
        Config::builtin_default().keyboard,
        KeyboardConfig::default()
    );
}

#[test]
fn bad_names_are_rejected_with_position() {
    for (name, what) in [
        ("Work", "not allowed"),
        ("9lives", "not allowed"),
        ("a_b", "not allowed"),
        ("", "not allowed"),
        ("abcdefghijabcdefghijabcdefghijabc", "not allowed"),
        ("host", "reserved"),
        ("../../etc", "not allowed"),
    ] {
        let text = format!("[[vm]]\nname = {name:?}\ncolor = \"#000000\"\n");
        let e = error(&text);
        assert!(e.starts_with("/cfg/config.toml:2:8: "), "{e}");
        assert!(e.contains(what), "{e}");
    }
    // 32 characters is the maximum and allowed.
    parse("[[vm]]\nname = \"abcdefghijabcdefghijabcdefghijab\"\ncolor = \"#000000\"\n").unwrap();
}

#[test]
fn duplicate_names_point_at_the_second_and_name_the_first() {
    let text = format!("{MINIMAL}[[vm]]\nname = \"work\"\ncolor = \"#111111\"\n");
    let e = error(&text);
    assert!(e.starts_with("/cfg/config.toml:8:8: "), "{e}");
    assert!(e.contains("already used on line 2"), "{e}");
}

#[test]
fn bad_colors_are_rejected() {
    for c in [
        "blue",
        "#12345",
        "#1234567",
        "#12345g",
        "3060ff",
        "#3060ff80",
    ] {
        let e = error(&format!("[[vm]]\nname = \"a\"\ncolor = {c:?}\n"));
        assert!(e.starts_with("/cfg/config.toml:3:9: "), "{e}");
        assert!(e.contains("#rrggbb"), "{e}");
    }
}

#[test]
fn unknown_and_missing_fields_are_errors() {
    let e = error("[[vm]]\nname = \"a\"\ncolour = \"#000000\"\n");
    assert!(
        e.contains("unknown field `colour`") && e.contains("check its spelling"),
        "{e}"
    );
    assert!(e.starts_with("/cfg/config.toml:3:1"), "{e}");
    let e = error("[[vm]]\nname = \"a\"\n");
    assert!(e.contains("missing field `color`"), "{e}");
    let e = error("[wallpaper]\n");
    assert!(e.contains("unknown field `wallpaper`"), "{e}");
}

#[test]
fn syntax_errors_have_positions() {
    let e = error("[[vm]]\nname = \"a\ncolor = 1\n");
    assert!(e.starts_with("/cfg/config.toml:2:"), "{e}");
    let e = error("[[vm]]\nname = 5\ncolor = \"#000000\"\n");
    assert!(e.starts_with("/cfg/config.toml:2:8: "), "{e}");
}

#[test]
fn bindings_override_add_and_remove() {
    let c = parse("[binds]\n\"Super+Q\" = \"none\"\n\"Ctrl+Alt+T\" = \"spawn foot --server\"\n\"alt+tab\" = \"focus-prev\"\n").unwrap();
    assert!(!c.bindings.iter().any(|b| b.action == Action::Close));
    let t = c
        .bindings
        .iter()
        .find(|b| matches!(b.action, Action::Spawn(_)))
        .unwrap();
    assert_eq!(t.action, Action::Spawn("foot --server".into()));
    assert!(t.combo.mods.ctrl && t.combo.mods.alt && !t.combo.mods.logo);
    let tab: Vec<_> = c
        .bindings
        .iter()
        .filter(|b| b.combo == KeyCombo::parse("Alt+Tab").unwrap())
        .collect();
    assert_eq!(tab.len(), 1);
    assert_eq!(tab[0].action, Action::FocusPrev);
}

#[test]
fn bad_bindings_are_rejected() {
    let e = error("[binds]\n\"Hyper+Q\" = \"close\"\n");
    assert!(
        e.starts_with("/cfg/config.toml:2:1: ") && e.contains("unknown modifier"),
        "{e}"
    );
    let e = error("[binds]\n\"Super+Nope\" = \"close\"\n");
    assert!(e.contains("unknown key \"Nope\""), "{e}");
    let e = error("[binds]\n\"Super+Q\" = \"explode\"\n");
    assert!(
        e.starts_with("/cfg/config.toml:2:13: ") && e.contains("unknown action"),
        "{e}"
    );
    let e = error("[binds]\n\"Super+Q\" = \"close now\"\n");
    assert!(e.contains("takes no argument"), "{e}");
    let e = error("[binds]\n\"Super+Q\" = \"spawn\"\n");
    assert!(e.contains("needs a command line"), "{e}");
}

#[test]
fn appearance_and_headless_limits() {
    assert!(error("[appearance]\ntitle-height = 4\n").contains("title-height"));
    assert!(error("[appearance]\nborder-width = 0\n").contains("border-width"));
    assert!(error("[headless]\nwidth = 100000\n").contains("width and height"));
    assert!(error("[headless]\noutputs = 0\n").contains("outputs"));
    assert!(error("[headless]\nscale = 0.0\n").contains("scale"));
    let c = parse("[headless]\noutputs = 2\nwidth = 640\nheight = 480\nrefresh = 30\n").unwrap();
    assert_eq!(
        (c.headless.outputs, c.headless.width, c.headless.refresh),
        (2, 640, 30)
    );
}

#[test]
fn socket_path_length_is_checked() {
    let dir = std::env::temp_dir().join(format!("bulkhead-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("config.toml");
    let text = "[[vm]]\nname = \"abcdefghijabcdefghijabcdefghijab\"\ncolor = \"#000000\"\n";
    std::fs::write(&file, text).unwrap();
    let c = Config::load(&file).unwrap();
    c.check_socket_paths(Path::new("/run/user/1000")).unwrap();
    let long = PathBuf::from(format!("/{}", "r".repeat(60)));
    let e = c.check_socket_paths(&long).unwrap_err().to_string();
    assert!(
        e.contains(":2:8: ") && e.contains("longer than the 107 bytes"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_file_is_a_clear_error() {
    let e = Config::load(Path::new("/nonexistent/bulkhead.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("/nonexistent/bulkhead.toml: cannot read the config file"),
        "{e}"
    );
}

#[test]
fn text_color_contrasts() {
    assert_eq!(
        Color::parse("#ffff00").unwrap().text_color(),
        Color::rgb(0, 0, 0)
    );
    assert_eq!(
        Color::parse("#3060ff").unwrap().text_color(),
        Color::rgb(255, 255, 255)
    );
    assert_eq!(
        Color::parse("#2ecc71").unwrap().text_color(),
        Color::rgb(0, 0, 0)
    );
}

#[test]
fn line_col_counts_characters() {
    assert_eq!(line_col("ab\ncd", 4), (2, 2));
    assert_eq!(line_col("é\nx", 3), (2, 1));
    assert_eq!(line_col("", 10), (1, 1));
}

#[test]
fn actions_parse_and_print() {
    for name in ACTION_NAMES {
        let arg = match *name {
            "focus-window" => Some("12"),
            "spawn" => Some("foot -e top"),
            _ => None,
        };
        let a = Action::from_name(name, arg).unwrap();
        assert_eq!(a.name(), *name);
        assert_eq!(Action::parse(&a.to_string()).unwrap(), a);
    }
    assert!(Action::from_name("focus-window", Some("x"))
        .unwrap_err()
        .contains("not a number"));
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Arbitrary text: a config or an error with a position inside the text, never a panic.
        #[test]
        fn arbitrary_text(text in "\\PC{0,400}") {
            check(&text);
        }

        /// The example config with one byte range replaced: close to valid, hits the checks.
        #[test]
        fn mutated_example(start in 0usize..EXAMPLE_CONFIG.len(), len in 0usize..12, insert in "[\\PC\\n]{0,12}") {
            let mut text = EXAMPLE_CONFIG.to_string();
            let start = (0..=start).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
            let end = (start + len).min(text.len());
            let end = (end..=text.len()).find(|i| text.is_char_boundary(*i)).unwrap_or(text.len());
            text.replace_range(start..end, &insert);
            check(&text);
        }
    }

    fn check(text: &str) {
        match Config::parse(text, Path::new("f.toml")) {
            Ok(c) => {
                for vm in &c.vms {
                    assert!(check_vm_name(&vm.name).is_ok());
                }
            }
            Err(e) => {
                if let Some((line, col)) = e.position {
                    assert!(line >= 1 && line <= text.lines().count().max(1) + 1, "{e}");
                    assert!(col >= 1, "{e}");
                }
                assert!(!e.message.is_empty());
            }
        }
    }
}

mod vms {
    use super::*;
    use crate::values::{Mac, Size};
    use crate::vm::*;

    fn vm(extra: &str) -> String {
        format!("[[vm]]\nname = \"work\"\ncolor = \"#3060ff\"\n{extra}\n")
    }

    #[test]
    fn the_minimal_vm_gets_defaults() {
        let c = parse(&vm("")).unwrap();
        let s = &c.vms[0].spec;
        assert_eq!(s.memory, Size::mib(1024));
        assert_eq!((s.cpus, s.vmm, s.cid), (2, VmmKind::Auto, 3));
        assert_eq!(
            s.root_overlay,
            RootOverlay::Disk {
                size: Size::mib(2048)
            }
        );
        assert!(s.home.is_some() && !s.disposable && s.auto_shutdown.is_none());
        assert_eq!(c.vmm, VmmSettings::default());
    }

    #[test]
    fn the_example_shows_every_option() {
        let c = parse(EXAMPLE_CONFIG).unwrap();
        let s = &c.vms[0].spec;
        assert_eq!(s.memory, Size::mib(2048));
        assert_eq!(
            s.kernel.as_deref(),
            Some(Path::new("/cfg/guests/work/vmlinuz"))
        );
        assert_eq!(
            s.root_overlay,
            RootOverlay::Disk {
                size: Size::mib(4096)
            }
        );
        assert_eq!(s.shares[0].mount, "/home/user/projects");
        assert_eq!(s.shares[0].uid_map[0].host, 1000);
        assert_eq!(s.disks[0].path, Path::new("/cfg/disks/work-data.img"));
        assert_eq!(s.networks.len(), 2);
        assert_eq!(s.networks[0].kind, NetKind::User);
        assert_eq!(s.networks[0].address.unwrap().to_string(), "10.0.2.15/24");
        assert_eq!(s.networks[0].mac, Mac::derive("work", 0));
        assert_eq!(
            s.networks[1].kind,
            NetKind::Switch {
                network: "office".into(),
                role: SwitchRole::Client
            }
        );
        assert_eq!(s.auto_shutdown.unwrap().0, 1800);
        assert_eq!(
            s.home.as_ref().unwrap().template.as_deref(),
            Some(Path::new("/etc/skel"))
        );
        assert!(s.sound.playback && !s.sound.capture);
        assert_eq!(s.apps[0].command, ["foot"]);
        assert_eq!(c.vms[1].spec.cid, 4);
    }

    #[test]
    fn tap_user_and_overlay_forms() {
        let c = parse(&vm(r#"root-overlay = "tmpfs"
disposable = true
auto-shutdown = true
[[vm.network]]
type = "tap"
name = "bh-test0"
host-address = "10.10.0.1/24"
address = "10.10.0.2/24"
routes = [{ to = "10.11.0.0/16", via = "10.10.0.1" }]
nameservers = ["10.10.0.1"]
mac = "02:00:00:00:00:09"
"#))
        .unwrap();
        let s = &c.vms[0].spec;
        assert_eq!(s.root_overlay, RootOverlay::Tmpfs);
        assert!(s.home.is_none(), "disposable VMs have no home");
        assert_eq!(s.auto_shutdown, Some(DEFAULT_AUTO_SHUTDOWN));
        let n = &s.networks[0];
        assert_eq!(n.mac.to_string(), "02:00:00:00:00:09");
        assert!(
            matches!(&n.kind, NetKind::Tap { name, host_address: Some(_), bridge: None } if name == "bh-test0")
        );
        assert_eq!(n.routes[0].to.to_string(), "10.11.0.0/16");
    }

    /// Every invalid value is an error at its own line:col, with a fix in the message.
    #[test]
    fn invalid_values_point_at_themselves() {
        let cases: &[(&str, &str, &str)] = &[
            ("memory = \"2X\"", "4:10", "write a number with a unit"),
            ("memory = 16", "4:10", "outside 64M"),
            ("cpus = 0", "4:8", "between 1 and 256"),
            ("vmm = \"firecracker\"", "4:7", "unknown variant"),
            ("root-overlay = \"zram\"", "4:16", "\"disk\", \"tmpfs\""),
            (
                "root-overlay = { type = \"tmpfs\", size = \"1G\" }",
                "4:16",
                "remove `size`",
            ),
            ("kernel-params = [\"a b\"]", "4:18", "without spaces"),
            (
                "kernel-params = [\"bulkhead.net=x\"]",
                "4:18",
                "set by Bulkhead",
            ),
            ("pci = [\"01:00\"]", "4:8", "not a PCI address"),
            ("auto-shutdown = { after = \"soon\" }", "4:27", "duration"),
            (
                "gpu = { context-types = [\"opengl\"] }",
                "4:26",
                "unknown GPU context type",
            ),
            (
                "gpu = { transport = \"tcp\" }",
                "4:21",
                "expected one of `auto`, `cross-domain`, `vsock`",
            ),
            ("cid = 2", "4:7", "at least 3"),
            ("log-level = \"loud\"", "4:13", "unknown variant"),
            (
                "disposable = true\nhome = true",
                "5:8",
                "no persistent home",
            ),
            (
                "disposable = true\n[[vm.disk]]\npath = \"d.img\"",
                "6:8",
                "must be read-only",
            ),
            (
                "depends-on = [\"mail\"]",
                "4:15",
                "not defined; defined: work",
            ),
            ("depends-on = [\"work\"]", "4:15", "cannot depend on itself"),
            (
                "[[vm.share]]\ntag = \"a b\"\npath = \"/x\"",
                "5:7",
                "share tag",
            ),
            (
                "[[vm.share]]\ntag = \"home\"\npath = \"/x\"",
                "5:7",
                "already used",
            ),
            (
                "[[vm.share]]\ntag = \"x\"\npath = \"/a:b\"",
                "6:8",
                "may not contain",
            ),
            (
                "[[vm.share]]\ntag = \"x\"\npath = \"/x\"\nuid-map = [\"1000\"]",
                "7:12",
                "GUEST:HOST:COUNT",
            ),
            ("[[vm.network]]\ntype = \"wifi\"", "5:8", "unknown variant"),
            ("[[vm.network]]\ntype = \"tap\"", "4:1", "needs `name`"),
            (
                "[[vm.network]]\ntype = \"tap\"\nname = \"much-too-long-name\"",
                "6:8",
                "1 to 15",
            ),
            (
                "[[vm.network]]\ntype = \"user\"\nname = \"t0\"",
                "4:1",
                "does not apply",
            ),
            (
                "[[vm.network]]\ntype = \"switch\"",
                "4:1",
                "needs `network`",
            ),
            (
                "[[vm.network]]\ntype = \"user\"\naddress = \"10.0.0.1\"",
                "6:11",
                "prefix length",
            ),
            (
                "[[vm.network]]\ntype = \"user\"\nmac = \"01:00:00:00:00:01\"",
                "6:7",
                "multicast",
            ),
            (
                "[[vm.app]]\nname = \"x\"\ncommand = []",
                "4:1",
                "needs a `name`",
            ),
            (
                "[[vm.vhost-user]]\ntype = \"tpm\"\nsocket = \"/s\"",
                "5:8",
                "unknown vhost-user",
            ),
        ];
        for (extra, at, what) in cases {
            let e = error(&vm(extra));
            assert!(
                e.starts_with(&format!("/cfg/config.toml:{at}: ")) && e.contains(what),
                "for {extra:?}: got {e:?}, wanted {at} and {what:?}"
            );
        }
    }

    #[test]
    fn checks_across_vms() {
        let two = |a: &str, b: &str| {
            format!(
                "[[vm]]\nname = \"a\"\ncolor = \"#000000\"\n{a}\n[[vm]]\nname = \"b\"\ncolor = \"#000000\"\n{b}\n"
            )
        };
        let e = error(&two("depends-on = [\"b\"]", "depends-on = [\"a\"]"));
        assert!(e.contains("cycle: a -> b -> a"), "{e}");
        let e = error(&two("cid = 7", "cid = 7"));
        assert!(e.contains(":8:7:") && e.contains("same vsock cid"), "{e}");
        let sw = "[[vm.network]]\ntype = \"switch\"\nnetwork = \"lan\"\nrole = \"router\"";
        let e = error(&two(sw, sw));
        assert!(e.contains("already has a router"), "{e}");
        let mac = "[[vm.network]]\ntype = \"user\"\nmac = \"02:00:00:00:00:01\"";
        assert!(error(&two(mac, mac)).contains("already used by an interface of VM \"a\""));
        parse(&two("depends-on = [\"b\"]", "")).unwrap();
    }

    #[test]
    fn vmm_settings() {
        let c = parse("[vmm]\naccel = \"tcg\"\nstop-timeout = \"5s\"").unwrap();
        assert_eq!((c.vmm.accel, c.vmm.stop_timeout.0), (Accel::Tcg, 5));
        assert!(error("[vmm]\nstop-timeout = 0").contains(":2:16: timeouts are between"));
        assert!(error("[vmm]\nstart-timeout = \"2d\"").contains("between 1 s and 1 h"));
    }
}

#[test]
fn clipboard_and_apps_are_checked() {
    let c = parse("[clipboard]\nmax-size = \"1M\"\ntimeout = \"30s\"\nkeep-after-paste = true\n[[app]]\nname = \"Terminal\"\ncommand = [\"foot\"]\n").unwrap();
    assert_eq!(c.clipboard.max_size, Size::mib(1));
    assert_eq!(c.clipboard.timeout, Duration(30));
    assert!(c.clipboard.keep_after_paste);
    assert_eq!(c.apps[0].command, ["foot"]);
    let d = parse("").unwrap();
    assert_eq!(d.clipboard, ClipboardConfig::default());
    assert!(error("[clipboard]\nmax-size = \"2G\"\n").contains("between 1K and 1G"));
    assert!(error("[clipboard]\ntimeout = \"0s\"\n").contains("between 1s and 10m"));
    assert!(error("[clipboard]\nsize = 3\n").contains(":2:"));
    let two =
        "[[app]]\nname = \"A\"\ncommand = [\"a\"]\n[[app]]\nname = \"A\"\ncommand = [\"b\"]\n";
    let e = error(two);
    assert!(
        e.contains("two apps named \"A\"") && e.contains(":4:"),
        "{e}"
    );
    // The Super key alone is a binding of its own (the launcher).
    assert!(d
        .bindings
        .iter()
        .any(|b| b.action == Action::Launcher && b.combo.mods == Modifiers::default()));
}

#[test]
fn session_settings_are_checked() {
    let c =
        parse("[session]\nautostart = [\"waybar\"]\nlock = \"swaylock -f\"\nidle-lock = \"10m\"\n")
            .unwrap();
    assert_eq!(c.session.autostart, ["waybar"]);
    assert_eq!(c.session.idle_lock, Some(Duration(600)));
    assert!(error("[session]\nidle-lock = \"5m\"\n").contains("needs a lock command"));
    assert!(error("[session]\nautostart = [\" \"]\n").contains("empty command"));
    assert!(error("[session]\nlock-after = 3\n").contains(":2:"));
}

#[test]
fn outputs_and_inputs_are_checked() {
    use crate::desktop::{InputMatch, ModeSpec, OutputTransform, Position};
    let c = parse(
        "[[output]]\nname = \"DP-1\"\nmode = \"2560x1440@143.97\"\nposition = \"0,0\"\nscale = 1.5\ntransform = \"90\"\n\
         [[output]]\nname = \"HDMI-A-1\"\nenable = false\n\
         [[input]]\nmatch = \"type:touchpad\"\ntap = true\nnatural-scroll = true\n\
         [[input]]\nmatch = \"Logitech USB Receiver\"\naccel-speed = -0.5\n\
         [session]\ndpms = \"15m\"\n",
    )
    .unwrap();
    assert_eq!(
        c.outputs[0].mode,
        Some(ModeSpec {
            width: 2560,
            height: 1440,
            refresh_mhz: Some(143_970)
        })
    );
    assert_eq!(c.outputs[0].position, Some(Position { x: 0, y: 0 }));
    assert_eq!(c.outputs[0].transform, OutputTransform::Rotate90);
    assert!(c.outputs[0].enable && !c.outputs[1].enable);
    assert_eq!(c.inputs[0].matches, InputMatch::Touchpad);
    assert_eq!(c.inputs[0].tap, Some(true));
    assert_eq!(
        c.inputs[1].matches,
        InputMatch::Name("Logitech USB Receiver".into())
    );
    assert_eq!(c.session.dpms, Some(Duration(900)));
    assert_eq!("1920x1080".parse::<ModeSpec>().unwrap().refresh_mhz, None);

    let e = error("[[output]]\nname = \"DP-1\"\nmode = \"1920by1080\"\n");
    assert!(e.contains(":3:") && e.contains("WIDTHxHEIGHT"), "{e}");
    let e = error("[[output]]\nname = \"DP-1\"\ntransform = \"45\"\n");
    assert!(e.contains("flipped-90"), "{e}");
    let e = error("[[output]]\nname = \"DP-1\"\n[[output]]\nname = \"DP-1\"\n");
    assert!(e.contains("configured twice") && e.contains(":3:"), "{e}");
    let e = error("[[output]]\nname = \"DP-1\"\nscale = 9.0\n");
    assert!(e.contains("between 0.5 and 4"), "{e}");
    let e = error("[[output]]\nname = \"DP-1\"\nposition = \"left\"\n");
    assert!(e.contains("\"X,Y\""), "{e}");
    let e = error("[[input]]\nmatch = \"type:mouse\"\n");
    assert!(e.contains("keyboard, pointer, touchpad, touch"), "{e}");
    let e = error("[[input]]\nmatch = \"type:touchpad\"\naccel-speed = 3.0\n");
    assert!(e.contains("between -1 and 1") && e.contains(":1:"), "{e}");
    let e = error("[[input]]\nmatch = \"type:touchpad\"\ntapping = true\n");
    assert!(e.contains("unknown field") && e.contains(":3:"), "{e}");
    assert!(error("[session]\ndpms = \"0s\"\n").contains("at least 1s"));
}

#[test]
fn a_cidr_knows_its_subnet() {
    let c: crate::values::Cidr = "10.0.2.15/24".parse().unwrap();
    assert!(c.contains("10.0.2.3".parse().unwrap()));
    assert!(!c.contains("10.0.3.3".parse().unwrap()));
    assert!(!c.contains("::1".parse().unwrap()));
    let all: crate::values::Cidr = "0.0.0.0/0".parse().unwrap();
    assert!(all.contains("203.0.113.9".parse().unwrap()));
    let host: crate::values::Cidr = "fd00::2/128".parse().unwrap();
    assert!(host.contains("fd00::2".parse().unwrap()));
    assert!(!host.contains("fd00::3".parse().unwrap()));
}

#[test]
fn icon_files_are_found_from_the_config_and_theme_names_stay_names() {
    let c = parse(
        r##"[[app]]
name = "Files"
command = ["nautilus"]
icon = "folder"
[[vm]]
name = "full"
color = "#16a085"
[[vm.app]]
name = "FeatherPad"
command = ["featherpad"]
icon = "icons/featherpad.svg"
[[vm.app]]
name = "Foot"
command = ["foot"]
icon = "/usr/share/pixmaps/foot.png"
"##,
    )
    .unwrap();
    assert_eq!(c.apps[0].icon.as_deref(), Some("folder"));
    assert_eq!(c.apps[0].icon_file(), None);
    let apps = &c.vms[0].spec.apps;
    assert_eq!(
        apps[0].icon_file(),
        Some(Path::new("/cfg/icons/featherpad.svg"))
    );
    assert_eq!(
        apps[1].icon_file(),
        Some(Path::new("/usr/share/pixmaps/foot.png"))
    );
}
