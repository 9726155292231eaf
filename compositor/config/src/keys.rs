//! Key combinations as written in `[binds]`: `"Super+Shift+E"`, `"Alt+Tab"`, `"Ctrl+Alt+Delete"`.

use std::fmt;

use xkbcommon::xkb;

/// The modifiers a binding requires (exactly these, no others).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Modifiers {
    pub ctrl: bool,
    pub alt: bool,
    pub shift: bool,
    pub logo: bool,
}

/// A modifier set plus one key, identified by its (lowercased) keysym.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyCombo {
    pub mods: Modifiers,
    /// The keysym without Shift applied (`q`, not `Q`), as xkb reports via `raw_syms`.
    pub keysym: u32,
}

impl KeyCombo {
    pub fn parse(s: &str) -> Result<KeyCombo, String> {
        let mut mods = Modifiers::default();
        if s.trim().eq_ignore_ascii_case("super") {
            // The Super key alone: pressed and released with nothing else.
            return Ok(KeyCombo {
                mods,
                keysym: xkb::keysyms::KEY_Super_L,
            });
        }
        let parts: Vec<&str> = s.split('+').map(str::trim).collect();
        let Some((key, modifiers)) = parts.split_last() else {
            return Err(format!("key binding {s:?} is empty"));
        };
        for m in modifiers {
            match m.to_ascii_lowercase().as_str() {
                "super" | "logo" | "mod4" | "win" => mods.logo = true,
                "ctrl" | "control" => mods.ctrl = true,
                "alt" | "mod1" => mods.alt = true,
                "shift" => mods.shift = true,
                other => {
                    return Err(format!(
                        "unknown modifier {other:?} in key binding {s:?}; use Super, Ctrl, Alt or Shift"
                    ))
                }
            }
        }
        if key.is_empty() {
            return Err(format!("key binding {s:?} has no key after its modifiers"));
        }
        let sym = xkb::keysym_from_name(key, xkb::KEYSYM_CASE_INSENSITIVE);
        if sym.raw() == xkb::keysyms::KEY_NoSymbol {
            return Err(format!(
                "unknown key {key:?} in key binding {s:?}; use an xkb key name such as Return, Tab, \
                 Escape, F1 or a letter"
            ));
        }
        Ok(KeyCombo {
            mods,
            keysym: lowercase_keysym(sym.raw()),
        })
    }
}

impl fmt::Display for KeyCombo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (on, name) in [
            (self.mods.logo, "Super+"),
            (self.mods.ctrl, "Ctrl+"),
            (self.mods.alt, "Alt+"),
            (self.mods.shift, "Shift+"),
        ] {
            if on {
                f.write_str(name)?;
            }
        }
        f.write_str(&xkb::keysym_get_name(xkb::Keysym::new(self.keysym)))
    }
}

/// The keysym of the lowercase letter for letter keysyms (`Q` → `q`), others unchanged.
pub fn lowercase_keysym(raw: u32) -> u32 {
    let sym = xkb::Keysym::new(raw);
    match sym.key_char() {
        Some(c) if c.is_alphabetic() && c.is_uppercase() => c
            .to_lowercase()
            .next()
            .map_or(raw, |l| xkb::Keysym::from_char(l).raw()),
        _ => raw,
    }
}
