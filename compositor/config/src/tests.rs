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
