//! A QR code drawn with Unicode half blocks: two module rows per text row, one module per
//! column, with a light quiet zone around it, so a phone can open the sign-in page.
//!
//! Light modules are drawn as ink (`█`, `▀`, `▄`) and dark ones as blank: on the usual dark
//! terminal background the code reads dark-on-light as scanners expect. With colours on, the
//! pane pins the colours (white ink on black) so a light terminal theme does not invert it.

use qrcode::{Color, QrCode};

/// Quiet-zone modules on each side. The QR spec asks for 4; 2 is what terminal QR tools use
/// to keep the code small, and phones read it reliably (the pane's own margin adds more).
pub const QUIET: usize = 2;

/// The QR code of `data` as text rows; `None` if it cannot be encoded (far too long).
pub fn lines(data: &str) -> Option<Vec<String>> {
    let code = QrCode::new(data.as_bytes()).ok()?;
    let w = code.width();
    let colors = code.to_colors();
    let size = w + 2 * QUIET;
    // Outside the symbol (quiet zone, and the half row past an odd size) is light.
    let dark = |x: usize, y: usize| -> bool {
        if x < QUIET || y < QUIET {
            return false;
        }
        let (mx, my) = (x - QUIET, y - QUIET);
        mx < w && my < w && colors.get(my * w + mx) == Some(&Color::Dark)
    };
    let rows = (0..size)
        .step_by(2)
        .map(|y| {
            (0..size)
                .map(|x| match (dark(x, y), dark(x, y + 1)) {
                    (false, false) => '█',
                    (false, true) => '▀',
                    (true, false) => '▄',
                    (true, true) => ' ',
                })
                .collect()
        })
        .collect();
    Some(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_blocks_carry_every_module() {
        let url = "https://microsoft.com/devicelogin";
        let rows = lines(url).unwrap();
        let code = QrCode::new(url.as_bytes()).unwrap();
        let w = code.width();
        let size = w + 2 * QUIET;
        assert_eq!(rows.len(), size.div_ceil(2));
        assert!(rows.iter().all(|r| r.chars().count() == size));
        let colors = code.to_colors();
        for my in 0..w {
            for mx in 0..w {
                let (x, y) = (mx + QUIET, my + QUIET);
                let c = rows[y / 2].chars().nth(x).unwrap();
                let ink_top = matches!(c, '█' | '▀');
                let ink_bottom = matches!(c, '█' | '▄');
                let light = if y % 2 == 0 { ink_top } else { ink_bottom };
                assert_eq!(light, colors[my * w + mx] == Color::Light, "({mx},{my})");
            }
        }
        // The quiet zone is light all round.
        assert!(rows[0].chars().all(|c| c == '█'));
    }
}
