//! Every decision the DRM/KMS session backend makes, as pure functions of plain data: which
//! mode a monitor gets, where outputs go, what a hotplug changed, what a VT switch does, when
//! the screens blank, and which `[[input]]` settings a device gets. `drm.rs` only translates
//! between these and smithay's DRM, udev and libinput types, so everything here is tested
//! without a GPU or a seat.

use std::time::{Duration, Instant};

use bulkhead_config::desktop::{InputConfig, InputMatch, ModeSpec, OutputConfig, OutputTransform};

/// One mode a connector offers, as the kernel lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModeInfo {
    pub width: i32,
    pub height: i32,
    /// Millihertz.
    pub refresh_mhz: i32,
    /// The monitor's preferred (native) mode.
    pub preferred: bool,
}

/// The mode to use: an index into the connector's mode list, and a warning for the user when
/// the configured mode could not be honoured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModeChoice {
    pub index: usize,
    pub warning: Option<String>,
}

/// How far a configured refresh may be from a listed one and still match it (1 Hz).
const REFRESH_TOLERANCE_MHZ: i32 = 1000;

/// Picks the mode for `connector` from its `modes` given the configured `wanted` mode.
///
/// - size and refresh given: that size with the refresh closest to the wanted one, if within
///   1 Hz;
/// - size only: the highest refresh at that size;
/// - nothing configured, or the configured mode is not offered: the preferred mode, else the
///   largest area, then the highest refresh (with a warning in the second case).
///
/// `None` when the connector lists no modes at all.
pub fn choose_mode(
    connector: &str,
    modes: &[ModeInfo],
    wanted: Option<&ModeSpec>,
) -> Option<ModeChoice> {
    if modes.is_empty() {
        return None;
    }
    if let Some(spec) = wanted {
        let same_size = modes
            .iter()
            .enumerate()
            .filter(|(_, m)| m.width == spec.width && m.height == spec.height);
        let found = match spec.refresh_mhz {
            Some(r) => same_size
                .filter(|(_, m)| (m.refresh_mhz - r).abs() <= REFRESH_TOLERANCE_MHZ)
                .min_by_key(|(i, m)| ((m.refresh_mhz - r).abs(), *i)),
            // Highest refresh; among equals the first listed (the kernel lists the better
            // variant first).
            None => same_size.min_by_key(|(i, m)| (std::cmp::Reverse(m.refresh_mhz), *i)),
        };
        if let Some((index, _)) = found {
            return Some(ModeChoice {
                index,
                warning: None,
            });
        }
        let index = default_mode(modes);
        let m = modes[index];
        return Some(ModeChoice {
            index,
            warning: Some(format!(
                "output {connector}: mode {spec} is not offered by the monitor; using {}x{}@{}.{:03} instead",
                m.width,
                m.height,
                m.refresh_mhz / 1000,
                m.refresh_mhz % 1000
            )),
        });
    }
    Some(ModeChoice {
        index: default_mode(modes),
        warning: None,
    })
}

/// The preferred mode, else the largest area, then the highest refresh. `modes` is not empty.
fn default_mode(modes: &[ModeInfo]) -> usize {
    if let Some(i) = modes.iter().position(|m| m.preferred) {
        return i;
    }
    modes
        .iter()
        .enumerate()
        .min_by_key(|(i, m)| {
            (
                std::cmp::Reverse(i64::from(m.width) * i64::from(m.height)),
                std::cmp::Reverse(m.refresh_mhz),
                *i,
            )
        })
        .map_or(0, |(i, _)| i)
}

/// The `[[output]]` block for a connector, if any.
pub fn output_config<'a>(outputs: &'a [OutputConfig], connector: &str) -> Option<&'a OutputConfig> {
    outputs.iter().find(|o| o.name == connector)
}

/// An output's size in the global logical space: its mode divided by its scale, with width and
/// height swapped when it is rotated a quarter turn.
pub fn logical_size(mode: (i32, i32), scale: f64, transform: OutputTransform) -> (i32, i32) {
    let scale = if scale.is_finite() && scale > 0.0 {
        scale
    } else {
        1.0
    };
    let w = (f64::from(mode.0) / scale).round() as i32;
    let h = (f64::from(mode.1) / scale).round() as i32;
    if transform.swaps_axes() {
        (h, w)
    } else {
        (w, h)
    }
}

/// A connected output as the layout sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct LayoutEntry {
    /// Logical size (see [`logical_size`]).
    pub size: (i32, i32),
    /// `position` from its `[[output]]` block.
    pub configured: Option<(i32, i32)>,
    /// `enable` from its `[[output]]` block (true when there is none).
    pub enabled: bool,
}

/// Places connected outputs (given in connector order): configured positions as configured;
/// the others left to right at y = 0, starting at the right edge of the rightmost configured
/// output (or at 0 when none is configured). Disabled outputs get `None`.
pub fn layout(entries: &[LayoutEntry]) -> Vec<Option<(i32, i32)>> {
    let mut x = entries
        .iter()
        .filter(|e| e.enabled)
        .filter_map(|e| e.configured.map(|(cx, _)| cx.saturating_add(e.size.0)))
        .max()
        .unwrap_or(0);
    entries
        .iter()
        .map(|e| {
            if !e.enabled {
                return None;
            }
            if let Some(at) = e.configured {
                return Some(at);
            }
            let at = (x, 0);
            x = x.saturating_add(e.size.0);
            Some(at)
        })
        .collect()
}

/// What changed between two scans of the connected connectors: `(added, removed)`, added in
/// the order of `current`, removed in the order of `previous`.
pub fn connector_changes<T: PartialEq + Clone>(previous: &[T], current: &[T]) -> (Vec<T>, Vec<T>) {
    let added = current
        .iter()
        .filter(|c| !previous.contains(c))
        .cloned()
        .collect();
    let removed = previous
        .iter()
        .filter(|p| !current.contains(p))
        .cloned()
        .collect();
    (added, removed)
}

/// Whether the session (the VT) is ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionPhase {
    Active,
    /// Another VT has the devices. `rescan`: a hotplug arrived meanwhile and the connectors are
    /// rescanned on resume.
    Paused {
        rescan: bool,
    },
}

/// What happens to the session backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEvent {
    /// libseat took the devices away (VT switch away).
    Pause,
    /// libseat gave them back.
    Resume,
    /// udev reported a change of the GPU (monitor plugged or unplugged).
    Hotplug,
    /// A page flip completed on some CRTC.
    VBlank,
    /// Something asked for a frame.
    Render,
}

/// What the backend must do for a [`SessionEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionAction {
    Nothing,
    /// Stop rendering, suspend libinput and pause the DRM device; outputs stay mapped so
    /// windows keep their places.
    Suspend,
    /// Resume libinput and the DRM device, reset every DRM surface's state (another DRM master
    /// may have changed it), rescan connectors if asked, and render every output anew.
    Reactivate {
        rescan: bool,
    },
    /// Rescan connectors now.
    Rescan,
    /// Mark the frame on the flipped CRTC done and render the next one.
    FrameDone,
    Render,
}

impl SessionPhase {
    pub fn initial(active: bool) -> SessionPhase {
        if active {
            SessionPhase::Active
        } else {
            SessionPhase::Paused { rescan: false }
        }
    }

    pub fn is_active(self) -> bool {
        self == SessionPhase::Active
    }

    /// The next phase and what to do. While paused, hotplugs are remembered for the resume,
    /// and page flips and frame requests are dropped: the device is not ours, and every
    /// surface is reset and redrawn on resume anyway.
    pub fn on(self, event: SessionEvent) -> (SessionPhase, SessionAction) {
        use SessionAction as A;
        use SessionEvent as E;
        match (self, event) {
            (SessionPhase::Active, E::Pause) => {
                (SessionPhase::Paused { rescan: false }, A::Suspend)
            }
            (SessionPhase::Active, E::Resume) => (self, A::Nothing),
            (SessionPhase::Active, E::Hotplug) => (self, A::Rescan),
            (SessionPhase::Active, E::VBlank) => (self, A::FrameDone),
            (SessionPhase::Active, E::Render) => (self, A::Render),
            (SessionPhase::Paused { rescan }, E::Resume) => {
                (SessionPhase::Active, A::Reactivate { rescan })
            }
            (SessionPhase::Paused { .. }, E::Hotplug) => {
                (SessionPhase::Paused { rescan: true }, A::Nothing)
            }
            (SessionPhase::Paused { .. }, E::Pause | E::VBlank | E::Render) => (self, A::Nothing),
        }
    }
}

/// Whether the monitors should be lit: always without a `dpms` timeout or while something
/// inhibits idling (a video player), else until `timeout` has passed since the last input.
pub fn outputs_should_be_on(
    last_input: Instant,
    now: Instant,
    timeout: Option<Duration>,
    inhibited: bool,
) -> bool {
    match timeout {
        None => true,
        Some(_) if inhibited => true,
        Some(t) => now.saturating_duration_since(last_input) < t,
    }
}

/// What an input device is, as libinput describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceKind {
    pub keyboard: bool,
    /// A pointer that is not a touchpad (mouse, trackball, trackpoint).
    pub pointer: bool,
    /// A pointer driven by fingers (tap-to-click is configurable).
    pub touchpad: bool,
    pub touch: bool,
}

/// libinput settings for one device after all matching `[[input]]` blocks; `None` keeps
/// libinput's default.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct InputSettings {
    pub tap: Option<bool>,
    pub natural_scroll: Option<bool>,
    pub left_handed: Option<bool>,
    pub disable_while_typing: Option<bool>,
    pub accel_speed: Option<f64>,
    /// Ignore the device's events entirely.
    pub disabled: bool,
}

/// Whether one `[[input]]` block applies to a device.
pub fn input_matches(m: &InputMatch, name: &str, kind: DeviceKind) -> bool {
    match m {
        InputMatch::Keyboard => kind.keyboard,
        InputMatch::Pointer => kind.pointer,
        InputMatch::Touchpad => kind.touchpad,
        InputMatch::Touch => kind.touch,
        InputMatch::Name(n) => n == name,
    }
}

/// Merges the `[[input]]` blocks that apply to a device, in file order: a later block's set
/// fields override earlier ones. `disabled = true` in any matching block disables the device
/// (the config cannot tell an explicit `false` from an absent one).
pub fn resolve_input(blocks: &[InputConfig], name: &str, kind: DeviceKind) -> InputSettings {
    let mut s = InputSettings::default();
    for b in blocks
        .iter()
        .filter(|b| input_matches(&b.matches, name, kind))
    {
        s.tap = b.tap.or(s.tap);
        s.natural_scroll = b.natural_scroll.or(s.natural_scroll);
        s.left_handed = b.left_handed.or(s.left_handed);
        s.disable_while_typing = b.disable_while_typing.or(s.disable_while_typing);
        s.accel_speed = b.accel_speed.or(s.accel_speed);
        s.disabled |= b.disabled;
    }
    s
}

/// The virtual terminal Ctrl+Alt+F`n` switches to, for an evdev key code (F1–F12). The backend
/// handles these before bindings: a session on a VT must always let the user leave it.
pub fn vt_for_key(evdev_code: u32, ctrl: bool, alt: bool) -> Option<i32> {
    if !(ctrl && alt) {
        return None;
    }
    match evdev_code {
        // KEY_F1 ..= KEY_F10
        59..=68 => Some(evdev_code as i32 - 58),
        // KEY_F11, KEY_F12
        87 => Some(11),
        88 => Some(12),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_config::desktop::Position;

    fn mode(width: i32, height: i32, refresh_mhz: i32, preferred: bool) -> ModeInfo {
        ModeInfo {
            width,
            height,
            refresh_mhz,
            preferred,
        }
    }

    fn spec(s: &str) -> ModeSpec {
        match s.parse() {
            Ok(m) => m,
            Err(e) => panic!("bad test mode {s}: {e}"),
        }
    }

    fn monitor() -> Vec<ModeInfo> {
        vec![
            mode(2560, 1440, 59_951, true),
            mode(2560, 1440, 143_973, false),
            mode(2560, 1440, 120_000, false),
            mode(1920, 1080, 60_000, false),
            mode(1920, 1080, 59_940, false),
            mode(1280, 720, 60_000, false),
        ]
    }

    #[test]
    fn no_config_takes_preferred() {
        let c = choose_mode("DP-1", &monitor(), None);
        assert_eq!(
            c,
            Some(ModeChoice {
                index: 0,
                warning: None
            })
        );
    }

    #[test]
    fn exact_size_and_refresh_within_one_hz() {
        let m = monitor();
        let c = choose_mode("DP-1", &m, Some(&spec("2560x1440@143.97")));
        assert_eq!(c.map(|c| (c.index, c.warning)), Some((1, None)));
        // 144 is 27 mHz off 143.973: still that mode.
        let c = choose_mode("DP-1", &m, Some(&spec("2560x1440@144")));
        assert_eq!(c.map(|c| c.index), Some(1));
        // 60 picks 59.951 (within 1 Hz), not 120.
        let c = choose_mode("DP-1", &m, Some(&spec("2560x1440@60")));
        assert_eq!(c.map(|c| c.index), Some(0));
        // The closest of two candidates within 1 Hz.
        let c = choose_mode("DP-1", &m, Some(&spec("1920x1080@59.94")));
        assert_eq!(c.map(|c| c.index), Some(4));
    }

    #[test]
    fn size_only_takes_highest_refresh() {
        let c = choose_mode("DP-1", &monitor(), Some(&spec("2560x1440")));
        assert_eq!(c.map(|c| (c.index, c.warning)), Some((1, None)));
        let c = choose_mode("DP-1", &monitor(), Some(&spec("1920x1080")));
        assert_eq!(c.map(|c| c.index), Some(3));
    }

    #[test]
    fn missing_mode_falls_back_to_preferred_with_a_warning() {
        let c = choose_mode("DP-1", &monitor(), Some(&spec("3840x2160@60")));
        let c = c.unwrap_or_else(|| panic!("no mode chosen"));
        assert_eq!(c.index, 0);
        let w = c.warning.unwrap_or_default();
        assert!(w.contains("DP-1"), "{w}");
        assert!(w.contains("3840x2160@60.000"), "{w}");
        assert!(w.contains("2560x1440@59.951"), "{w}");
        // A refresh more than 1 Hz off is not a match either.
        let c = choose_mode("DP-1", &monitor(), Some(&spec("2560x1440@100")));
        assert!(c.is_some_and(|c| c.index == 0 && c.warning.is_some()));
    }

    #[test]
    fn without_preferred_largest_then_fastest() {
        let modes = vec![
            mode(1920, 1080, 60_000, false),
            mode(2560, 1440, 60_000, false),
            mode(2560, 1440, 75_000, false),
            mode(1280, 1024, 75_000, false),
        ];
        assert_eq!(
            choose_mode("HDMI-A-1", &modes, None).map(|c| c.index),
            Some(2)
        );
        let c = choose_mode("HDMI-A-1", &modes, Some(&spec("800x600")));
        assert!(c.is_some_and(|c| c.index == 2 && c.warning.is_some()));
    }

    #[test]
    fn no_modes_no_choice() {
        assert_eq!(choose_mode("DP-1", &[], None), None);
        assert_eq!(choose_mode("DP-1", &[], Some(&spec("1920x1080"))), None);
    }

    #[test]
    fn logical_size_scales_and_rotates() {
        assert_eq!(
            logical_size((3840, 2160), 2.0, OutputTransform::Normal),
            (1920, 1080)
        );
        assert_eq!(
            logical_size((2560, 1440), 1.5, OutputTransform::Rotate90),
            (960, 1707)
        );
        assert_eq!(
            logical_size((1920, 1080), 1.0, OutputTransform::Flipped270),
            (1080, 1920)
        );
        assert_eq!(
            logical_size((1920, 1080), 1.0, OutputTransform::Rotate180),
            (1920, 1080)
        );
        // A nonsensical scale is treated as 1.
        assert_eq!(
            logical_size((1920, 1080), 0.0, OutputTransform::Normal),
            (1920, 1080)
        );
    }

    fn entry(w: i32, configured: Option<(i32, i32)>, enabled: bool) -> LayoutEntry {
        LayoutEntry {
            size: (w, 1000),
            configured,
            enabled,
        }
    }

    #[test]
    fn layout_left_to_right_without_config() {
        let l = layout(&[entry(1920, None, true), entry(1280, None, true)]);
        assert_eq!(l, vec![Some((0, 0)), Some((1920, 0))]);
    }

    #[test]
    fn layout_unconfigured_go_right_of_configured() {
        let l = layout(&[
            entry(1000, None, true),
            entry(1920, Some((500, -200)), true),
            entry(800, None, true),
            entry(600, Some((0, 1000)), true),
        ]);
        // Rightmost configured edge: 500 + 1920.
        assert_eq!(
            l,
            vec![
                Some((2420, 0)),
                Some((500, -200)),
                Some((3420, 0)),
                Some((0, 1000))
            ]
        );
    }

    #[test]
    fn layout_skips_disabled() {
        let l = layout(&[
            entry(1920, None, false),
            entry(1280, None, true),
            entry(4000, Some((0, 0)), false),
        ]);
        // The disabled configured one does not push the others right.
        assert_eq!(l, vec![None, Some((0, 0)), None]);
    }

    #[test]
    fn layout_uses_config_types() {
        let cfg = OutputConfig {
            name: "DP-1".into(),
            enable: true,
            mode: None,
            position: Some(Position { x: -1920, y: 0 }),
            scale: Some(2.0),
            transform: OutputTransform::Rotate270,
        };
        let outputs = [cfg];
        let c = output_config(&outputs, "DP-1");
        assert!(c.is_some());
        assert!(output_config(&outputs, "DP-2").is_none());
        let c = &outputs[0];
        let size = logical_size((3840, 2160), c.scale.unwrap_or(1.0), c.transform);
        assert_eq!(size, (1080, 1920));
        let l = layout(&[
            LayoutEntry {
                size,
                configured: c.position.map(|p| (p.x, p.y)),
                enabled: c.enable,
            },
            entry(1920, None, true),
        ]);
        assert_eq!(l, vec![Some((-1920, 0)), Some((-840, 0))]);
    }

    #[test]
    fn hotplug_changes_in_stable_order() {
        let prev = ["eDP-1", "DP-1", "DP-2"];
        let cur = ["eDP-1", "HDMI-A-1", "DP-3", "DP-2"];
        let (added, removed) = connector_changes(&prev, &cur);
        assert_eq!(added, vec!["HDMI-A-1", "DP-3"]);
        assert_eq!(removed, vec!["DP-1"]);
        let (added, removed) = connector_changes(&cur, &cur);
        assert!(added.is_empty() && removed.is_empty());
        let (added, removed) = connector_changes::<&str>(&[], &prev);
        assert_eq!(added, prev.to_vec());
        assert!(removed.is_empty());
    }

    #[test]
    fn session_pause_and_resume() {
        use SessionAction as A;
        use SessionEvent as E;
        let s = SessionPhase::initial(true);
        assert_eq!(s.on(E::Render), (SessionPhase::Active, A::Render));
        assert_eq!(s.on(E::VBlank), (SessionPhase::Active, A::FrameDone));
        assert_eq!(s.on(E::Hotplug), (SessionPhase::Active, A::Rescan));
        assert_eq!(s.on(E::Resume), (SessionPhase::Active, A::Nothing));
        let (s, a) = s.on(E::Pause);
        assert_eq!(a, A::Suspend);
        assert!(!s.is_active());
        // Nothing renders while paused; a second pause is harmless.
        for e in [E::Render, E::VBlank, E::Pause] {
            assert_eq!(s.on(e), (s, A::Nothing));
        }
        let (s2, a) = s.on(E::Resume);
        assert_eq!(
            (s2, a),
            (SessionPhase::Active, A::Reactivate { rescan: false })
        );
    }

    #[test]
    fn hotplug_while_paused_is_rescanned_on_resume() {
        use SessionEvent as E;
        let s = SessionPhase::initial(true);
        let (s, _) = s.on(E::Pause);
        let (s, a) = s.on(E::Hotplug);
        assert_eq!(a, SessionAction::Nothing);
        let (s, _) = s.on(E::VBlank);
        let (s, a) = s.on(E::Resume);
        assert_eq!(s, SessionPhase::Active);
        assert_eq!(a, SessionAction::Reactivate { rescan: true });
        // Starting inactive: nothing until the first resume.
        let s = SessionPhase::initial(false);
        assert_eq!(s.on(E::Render).1, SessionAction::Nothing);
        assert_eq!(s.on(E::Resume).0, SessionPhase::Active);
    }

    #[test]
    fn dpms_turns_off_after_timeout() {
        let t0 = Instant::now();
        let ten = Some(Duration::from_secs(10));
        assert!(outputs_should_be_on(t0, t0, ten, false));
        assert!(outputs_should_be_on(
            t0,
            t0 + Duration::from_secs(9),
            ten,
            false
        ));
        assert!(!outputs_should_be_on(
            t0,
            t0 + Duration::from_secs(10),
            ten,
            false
        ));
        // No timeout: always on; inhibited: on.
        assert!(outputs_should_be_on(
            t0,
            t0 + Duration::from_secs(3600),
            None,
            false
        ));
        assert!(outputs_should_be_on(
            t0,
            t0 + Duration::from_secs(3600),
            ten,
            true
        ));
        // Input "after" now (clock skew between sources) counts as fresh.
        assert!(outputs_should_be_on(
            t0 + Duration::from_secs(5),
            t0,
            ten,
            false
        ));
    }

    fn block(m: &str) -> InputConfig {
        InputConfig {
            matches: match m.parse() {
                Ok(m) => m,
                Err(e) => panic!("{e}"),
            },
            tap: None,
            natural_scroll: None,
            left_handed: None,
            disable_while_typing: None,
            accel_speed: None,
            disabled: false,
        }
    }

    const TOUCHPAD: DeviceKind = DeviceKind {
        keyboard: false,
        pointer: false,
        touchpad: true,
        touch: false,
    };
    const MOUSE: DeviceKind = DeviceKind {
        keyboard: false,
        pointer: true,
        touchpad: false,
        touch: false,
    };

    #[test]
    fn input_blocks_match_by_type_and_name() {
        let kb = DeviceKind {
            keyboard: true,
            ..DeviceKind::default()
        };
        let touch = DeviceKind {
            touch: true,
            ..DeviceKind::default()
        };
        let tp = block("type:touchpad").matches;
        assert!(input_matches(&tp, "SynPS/2", TOUCHPAD));
        assert!(!input_matches(&tp, "SynPS/2", MOUSE));
        assert!(input_matches(&block("type:pointer").matches, "m", MOUSE));
        assert!(input_matches(&block("type:keyboard").matches, "k", kb));
        assert!(input_matches(&block("type:touch").matches, "t", touch));
        assert!(!input_matches(&block("type:touch").matches, "t", kb));
        let by_name = block("Logitech G502").matches;
        assert!(input_matches(&by_name, "Logitech G502", MOUSE));
        assert!(!input_matches(&by_name, "Logitech G50", MOUSE));
    }

    #[test]
    fn later_blocks_override_field_by_field() {
        let mut a = block("type:touchpad");
        a.tap = Some(true);
        a.natural_scroll = Some(true);
        a.accel_speed = Some(0.3);
        let mut b = block("Apple Trackpad");
        b.natural_scroll = Some(false);
        b.disable_while_typing = Some(false);
        let mut c = block("type:pointer");
        c.left_handed = Some(true);
        let blocks = [a, b, c];

        let s = resolve_input(&blocks, "Apple Trackpad", TOUCHPAD);
        assert_eq!(
            s,
            InputSettings {
                tap: Some(true),
                natural_scroll: Some(false),
                left_handed: None,
                disable_while_typing: Some(false),
                accel_speed: Some(0.3),
                disabled: false,
            }
        );
        let s = resolve_input(&blocks, "Other Touchpad", TOUCHPAD);
        assert_eq!(s.natural_scroll, Some(true));
        assert_eq!(s.disable_while_typing, None);
        let s = resolve_input(&blocks, "Mouse", MOUSE);
        assert_eq!(
            s,
            InputSettings {
                left_handed: Some(true),
                ..InputSettings::default()
            }
        );
        assert_eq!(resolve_input(&[], "x", MOUSE), InputSettings::default());
    }

    #[test]
    fn any_matching_block_disables() {
        let mut off = block("Noisy Touchscreen");
        off.disabled = true;
        let mut later = block("type:touch");
        later.tap = Some(true);
        let touch = DeviceKind {
            touch: true,
            ..DeviceKind::default()
        };
        let blocks = [off, later];
        assert!(resolve_input(&blocks, "Noisy Touchscreen", touch).disabled);
        assert!(!resolve_input(&blocks, "Good Touchscreen", touch).disabled);
    }

    #[test]
    fn ctrl_alt_function_keys_switch_vt() {
        assert_eq!(vt_for_key(59, true, true), Some(1));
        assert_eq!(vt_for_key(68, true, true), Some(10));
        assert_eq!(vt_for_key(87, true, true), Some(11));
        assert_eq!(vt_for_key(88, true, true), Some(12));
        assert_eq!(vt_for_key(59, true, false), None);
        assert_eq!(vt_for_key(59, false, true), None);
        // KEY_1 and KEY_F13 are no VT keys.
        assert_eq!(vt_for_key(2, true, true), None);
        assert_eq!(vt_for_key(183, true, true), None);
    }
}
