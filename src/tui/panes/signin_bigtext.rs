//! A block font for the device-code sign-in's user code: 5 rows per glyph, A–Z, 0–9 and `-`,
//! drawn with full blocks so the code can be read from across the desk (and typed into a
//! phone) without squinting.

/// Rows per glyph.
pub const HEIGHT: usize = 5;
/// Columns per glyph.
pub const GLYPH_WIDTH: usize = 5;

/// The glyph of `c` (case-insensitive): `#` is ink. `None` for characters the font lacks.
fn glyph(c: char) -> Option<[&'static str; HEIGHT]> {
    Some(match c.to_ascii_uppercase() {
        'A' => [" ### ", "#   #", "#####", "#   #", "#   #"],
        'B' => ["#### ", "#   #", "#### ", "#   #", "#### "],
        'C' => [" ####", "#    ", "#    ", "#    ", " ####"],
        'D' => ["#### ", "#   #", "#   #", "#   #", "#### "],
        'E' => ["#####", "#    ", "#### ", "#    ", "#####"],
        'F' => ["#####", "#    ", "#### ", "#    ", "#    "],
        'G' => [" ####", "#    ", "#  ##", "#   #", " ####"],
        'H' => ["#   #", "#   #", "#####", "#   #", "#   #"],
        'I' => ["#####", "  #  ", "  #  ", "  #  ", "#####"],
        'J' => ["#####", "   # ", "   # ", "#  # ", " ##  "],
        'K' => ["#   #", "#  # ", "###  ", "#  # ", "#   #"],
        'L' => ["#    ", "#    ", "#    ", "#    ", "#####"],
        'M' => ["#   #", "## ##", "# # #", "#   #", "#   #"],
        'N' => ["#   #", "##  #", "# # #", "#  ##", "#   #"],
        'O' => [" ### ", "#   #", "#   #", "#   #", " ### "],
        'P' => ["#### ", "#   #", "#### ", "#    ", "#    "],
        'Q' => [" ### ", "#   #", "# # #", "#  # ", " ## #"],
        'R' => ["#### ", "#   #", "#### ", "#  # ", "#   #"],
        'S' => [" ####", "#    ", " ### ", "    #", "#### "],
        'T' => ["#####", "  #  ", "  #  ", "  #  ", "  #  "],
        'U' => ["#   #", "#   #", "#   #", "#   #", " ### "],
        'V' => ["#   #", "#   #", "#   #", " # # ", "  #  "],
        'W' => ["#   #", "#   #", "# # #", "## ##", "#   #"],
        'X' => ["#   #", " # # ", "  #  ", " # # ", "#   #"],
        'Y' => ["#   #", " # # ", "  #  ", "  #  ", "  #  "],
        'Z' => ["#####", "   # ", "  #  ", " #   ", "#####"],
        // A slashed zero, so it never reads as the letter O.
        '0' => [" ### ", "#  ##", "# # #", "##  #", " ### "],
        '1' => ["  #  ", " ##  ", "  #  ", "  #  ", " ### "],
        '2' => [" ### ", "#   #", "  ## ", " #   ", "#####"],
        '3' => ["#### ", "    #", " ### ", "    #", "#### "],
        '4' => ["#   #", "#   #", "#####", "    #", "    #"],
        '5' => ["#####", "#    ", "#### ", "    #", "#### "],
        '6' => [" ### ", "#    ", "#### ", "#   #", " ### "],
        '7' => ["#####", "    #", "   # ", "  #  ", "  #  "],
        '8' => [" ### ", "#   #", " ### ", "#   #", " ### "],
        '9' => [" ### ", "#   #", " ####", "    #", " ### "],
        '-' => ["     ", "     ", " ### ", "     ", "     "],
        ' ' => ["     ", "     ", "     ", "     ", "     "],
        _ => return None,
    })
}

/// The width `text` takes with `gap` blank columns between glyphs.
pub fn width(text: &str, gap: usize) -> usize {
    let n = text.chars().count();
    n * GLYPH_WIDTH + n.saturating_sub(1) * gap
}

/// `text` in the block font, one string per row; `None` when a character has no glyph (the
/// caller then shows plain text).
pub fn render(text: &str, gap: usize) -> Option<Vec<String>> {
    let glyphs: Vec<[&str; HEIGHT]> = text.chars().map(glyph).collect::<Option<_>>()?;
    let spacer = " ".repeat(gap);
    let rows = (0..HEIGHT)
        .map(|row| {
            glyphs
                .iter()
                .map(|g| g[row].replace('#', "█"))
                .collect::<Vec<_>>()
                .join(&spacer)
        })
        .collect();
    Some(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_glyph_is_five_by_five_and_distinct() {
        let chars: Vec<char> = ('A'..='Z').chain('0'..='9').chain(['-']).collect();
        let mut seen = std::collections::HashSet::new();
        for c in chars {
            let g = glyph(c).unwrap();
            assert!(g.iter().all(|r| r.chars().count() == GLYPH_WIDTH), "{c}");
            assert!(seen.insert(g), "{c} looks like another glyph");
        }
        assert!(glyph('a').is_some());
        assert!(glyph('é').is_none());
    }

    #[test]
    fn renders_rows_of_the_promised_width() {
        let rows = render("AB12", 2).unwrap();
        assert_eq!(rows.len(), HEIGHT);
        assert!(rows.iter().all(|r| r.chars().count() == width("AB12", 2)));
        assert!(render("A?", 1).is_none());
        assert_eq!(width("", 1), 0);
    }
}
