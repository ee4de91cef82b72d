//! "Did you mean": the nearest names to a misspelt one, by edit distance.

/// Levenshtein distance between `a` and `b`, in characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

/// Up to `max` candidates close to `word`, nearest first (ties in the candidates' order).
///
/// A candidate is close when its distance is at most a third of the longer name (at least 2),
/// or when one name contains the other (`thing_dump` finds `sw_thing_dump`).
pub fn nearest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
    max: usize,
) -> Vec<&'a str> {
    let mut scored: Vec<(usize, usize, &str)> = candidates
        .into_iter()
        .enumerate()
        .filter_map(|(order, c)| {
            let d = edit_distance(word, c);
            let limit = (word.chars().count().max(c.chars().count()) / 3).max(2);
            let contains = word.len() >= 3 && (c.contains(word) || word.contains(c));
            (d <= limit || contains).then_some((d, order, c))
        })
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.2 == b.2);
    scored.into_iter().take(max).map(|(_, _, c)| c).collect()
}

/// `did you mean `a`, `b` or `c`?`, or `None` when nothing is close.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let near = nearest(word, candidates, 3);
    let quoted: Vec<String> = near.iter().map(|n| format!("`{n}`")).collect();
    match quoted.as_slice() {
        [] => None,
        [one] => Some(format!("did you mean {one}?")),
        [init @ .., last] => Some(format!("did you mean {} or {last}?", init.join(", "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("control_pign", "control_ping"), 2);
        assert_eq!(edit_distance("ü", "u"), 1);
    }

    #[test]
    fn nearest_names_first() {
        let names = [
            "control_ping",
            "control_ping_reply",
            "cli_inband",
            "sw_thing_dump",
        ];
        assert_eq!(nearest("control_pign", names, 3), ["control_ping"]);
        assert_eq!(nearest("thing_dump", names, 3), ["sw_thing_dump"]);
        assert!(nearest("zzzzzzzz", names, 3).is_empty());
        assert_eq!(
            did_you_mean("control_pin", names).as_deref(),
            Some("did you mean `control_ping` or `control_ping_reply`?")
        );
        assert_eq!(
            did_you_mean("cli_inbnd", names).as_deref(),
            Some("did you mean `cli_inband`?")
        );
        assert_eq!(did_you_mean("qqqqqqqq", names), None);
    }
}
