//! Monitors (`[[output]]`) and input devices (`[[input]]`) of the desktop session.
//!
//! ```toml
//! [[output]]
//! name = "DP-1"                 # connector name as `bulkhead msg outputs` shows it
//! mode = "2560x1440@143.97"     # or "2560x1440" (highest refresh), default: the preferred mode
//! position = "0,0"              # logical pixels; default: right of the configured ones
//! scale = 1.5
//! transform = "90"              # normal, 90, 180, 270, flipped, flipped-90, flipped-180, flipped-270
//!
//! [[output]]
//! name = "HDMI-A-1"
//! enable = false
//!
//! [[input]]
//! match = "type:touchpad"       # or "type:keyboard", "type:pointer", "type:touch", or a device name
//! tap = true
//! natural-scroll = true
//! ```

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

use crate::values::from_str_or_int;

/// A video mode asked for in the config: size, and refresh in mHz when given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModeSpec {
    pub width: i32,
    pub height: i32,
    /// Millihertz; `None`: the highest refresh at that size.
    pub refresh_mhz: Option<i32>,
}

impl FromStr for ModeSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<ModeSpec, String> {
        let bad = || {
            format!(
                "mode {s:?} is not understood: write WIDTHxHEIGHT or WIDTHxHEIGHT@HZ \
                 (for example \"1920x1080\" or \"2560x1440@143.97\")"
            )
        };
        let (size, refresh) = match s.trim().split_once('@') {
            Some((size, hz)) => (size, Some(hz)),
            None => (s.trim(), None),
        };
        let (w, h) = size.split_once('x').ok_or_else(bad)?;
        let width: i32 = w.trim().parse().map_err(|_| bad())?;
        let height: i32 = h.trim().parse().map_err(|_| bad())?;
        if !(1..=16384).contains(&width) || !(1..=16384).contains(&height) {
            return Err(format!(
                "mode {s:?}: width and height must be between 1 and 16384"
            ));
        }
        let refresh_mhz = match refresh {
            None => None,
            Some(hz) => {
                let hz: f64 = hz.trim().parse().map_err(|_| bad())?;
                if !(hz.is_finite() && (1.0..=1000.0).contains(&hz)) {
                    return Err(format!(
                        "mode {s:?}: the refresh rate must be between 1 and 1000 Hz"
                    ));
                }
                Some((hz * 1000.0).round() as i32)
            }
        };
        Ok(ModeSpec {
            width,
            height,
            refresh_mhz,
        })
    }
}

impl fmt::Display for ModeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.width, self.height)?;
        if let Some(r) = self.refresh_mhz {
            write!(f, "@{}.{:03}", r / 1000, r % 1000)?;
        }
        Ok(())
    }
}

/// An output's position in the global logical space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub x: i32,
    pub y: i32,
}

impl FromStr for Position {
    type Err = String;
    fn from_str(s: &str) -> Result<Position, String> {
        let bad =
            || format!("position {s:?} is not understood: write \"X,Y\" (for example \"1920,0\")");
        let (x, y) = s.split_once(',').ok_or_else(bad)?;
        let x: i32 = x.trim().parse().map_err(|_| bad())?;
        let y: i32 = y.trim().parse().map_err(|_| bad())?;
        if !(-65536..=65536).contains(&x) || !(-65536..=65536).contains(&y) {
            return Err(format!("position {s:?}: coordinates must be within ±65536"));
        }
        Ok(Position { x, y })
    }
}

/// How an output's content is rotated and flipped (wl_output.transform).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputTransform {
    #[default]
    Normal,
    Rotate90,
    Rotate180,
    Rotate270,
    Flipped,
    Flipped90,
    Flipped180,
    Flipped270,
}

impl FromStr for OutputTransform {
    type Err = String;
    fn from_str(s: &str) -> Result<OutputTransform, String> {
        Ok(match s.trim() {
            "normal" | "0" => OutputTransform::Normal,
            "90" => OutputTransform::Rotate90,
            "180" => OutputTransform::Rotate180,
            "270" => OutputTransform::Rotate270,
            "flipped" => OutputTransform::Flipped,
            "flipped-90" => OutputTransform::Flipped90,
            "flipped-180" => OutputTransform::Flipped180,
            "flipped-270" => OutputTransform::Flipped270,
            _ => {
                return Err(format!(
                    "transform {s:?} is not one of normal, 90, 180, 270, flipped, flipped-90, \
                     flipped-180, flipped-270"
                ))
            }
        })
    }
}

impl OutputTransform {
    /// Whether width and height swap on screen.
    pub fn swaps_axes(self) -> bool {
        matches!(
            self,
            OutputTransform::Rotate90
                | OutputTransform::Rotate270
                | OutputTransform::Flipped90
                | OutputTransform::Flipped270
        )
    }
}

from_str_or_int!(ModeSpec, "a mode such as \"1920x1080@60\"", |n| n
    .to_string()
    .parse());
from_str_or_int!(Position, "a position such as \"1920,0\"", |n| n
    .to_string()
    .parse());
from_str_or_int!(
    OutputTransform,
    "a transform such as \"normal\" or \"90\"",
    |n| n.to_string().parse()
);

/// One monitor's settings (`[[output]]`), matched by connector name.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OutputConfig {
    pub name: String,
    #[serde(default = "yes")]
    pub enable: bool,
    #[serde(default)]
    pub mode: Option<ModeSpec>,
    #[serde(default)]
    pub position: Option<Position>,
    #[serde(default)]
    pub scale: Option<f64>,
    #[serde(default)]
    pub transform: OutputTransform,
}

fn yes() -> bool {
    true
}

/// Which input devices an `[[input]]` block applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputMatch {
    Keyboard,
    Pointer,
    Touchpad,
    Touch,
    /// The device's name exactly as libinput reports it.
    Name(String),
}

impl FromStr for InputMatch {
    type Err = String;
    fn from_str(s: &str) -> Result<InputMatch, String> {
        match s.strip_prefix("type:") {
            Some("keyboard") => Ok(InputMatch::Keyboard),
            Some("pointer") => Ok(InputMatch::Pointer),
            Some("touchpad") => Ok(InputMatch::Touchpad),
            Some("touch") => Ok(InputMatch::Touch),
            Some(other) => Err(format!(
                "input type {other:?} is not one of keyboard, pointer, touchpad, touch \
                 (write \"type:touchpad\", or a device name)"
            )),
            None if s.trim().is_empty() => Err(
                "an [[input]] match must not be empty: write \"type:touchpad\" or a device name"
                    .into(),
            ),
            None => Ok(InputMatch::Name(s.to_string())),
        }
    }
}

from_str_or_int!(InputMatch, "\"type:touchpad\" or a device name", |n| n
    .to_string()
    .parse());

/// Settings for matching input devices (`[[input]]`); unset fields keep libinput's defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct InputConfig {
    #[serde(rename = "match")]
    pub matches: InputMatch,
    #[serde(default)]
    pub tap: Option<bool>,
    #[serde(default)]
    pub natural_scroll: Option<bool>,
    #[serde(default)]
    pub left_handed: Option<bool>,
    #[serde(default)]
    pub disable_while_typing: Option<bool>,
    /// Pointer acceleration, -1 (slowest) to 1 (fastest).
    #[serde(default)]
    pub accel_speed: Option<f64>,
    /// Ignore this device entirely.
    #[serde(default)]
    pub disabled: bool,
}

/// Checks values serde cannot: scale range, unique output names, acceleration range.
pub fn check_outputs(outputs: &[OutputConfig]) -> Result<(), (usize, String)> {
    for (i, o) in outputs.iter().enumerate() {
        if o.name.trim().is_empty() {
            return Err((i, "[[output]] needs a name, e.g. name = \"DP-1\"".into()));
        }
        if outputs[..i].iter().any(|p| p.name == o.name) {
            return Err((
                i,
                format!(
                    "output {:?} is configured twice; merge the two [[output]] blocks",
                    o.name
                ),
            ));
        }
        if let Some(s) = o.scale {
            if !(s.is_finite() && (0.5..=4.0).contains(&s)) {
                return Err((
                    i,
                    format!("output {:?}: scale must be between 0.5 and 4", o.name),
                ));
            }
        }
    }
    Ok(())
}

pub fn check_inputs(inputs: &[InputConfig]) -> Result<(), (usize, String)> {
    for (i, d) in inputs.iter().enumerate() {
        if let Some(a) = d.accel_speed {
            if !(a.is_finite() && (-1.0..=1.0).contains(&a)) {
                return Err((i, "[[input]] accel-speed must be between -1 and 1".into()));
            }
        }
    }
    Ok(())
}
