//! Collation: how strings compare, sort and collide in keys under the database's
//! default collation, `SQL_Latin1_General_CP1_CI_AS` (case-insensitive, accent-sensitive;
//! the only collation the stand-in supports, so every text column carries it).
//!
//! A SQL collation has two sets of rules (documented in "Collation and Unicode
//! support", <https://learn.microsoft.com/en-us/previous-versions/sql/sql-server-2012/ms143726(v=sql.110)>,
//! and "Collation Types", <https://learn.microsoft.com/en-us/previous-versions/sql/sql-server-2008/ms175194(v=sql.100)>):
//!
//! * [`Rules::NonUnicode`] for `char`/`varchar`: a static table, SQL Server sort
//!   order 52 on code page 1252 ("SQL Server Collation Name",
//!   <https://learn.microsoft.com/en-us/sql/t-sql/statements/sql-server-collation-name-transact-sql>).
//!   Every character has one weight and strings compare character by character
//!   ("string sort"): the hyphen and the apostrophe are ordinary punctuation and,
//!   like all punctuation, sort before digits and letters (`'a-b' < 'ab'`).
//! * [`Rules::Unicode`] for `nchar`/`nvarchar`: the Windows (Unicode) sorting rules of
//!   `Latin1_General_CI_AS`, a multi-level "word sort". Microsoft KB 322112 "Comparing
//!   SQL collations to Windows collations" (quoted at
//!   <https://www.e-learn.cn/qa/answer/800851/1788051.html>) and KB 305704 "PRB: Windows
//!   Collations Ignore Single Quote and Hyphen When Ordering"
//!   (<https://ftp.zx.net.nz/pub/archive/ftp.microsoft.com/MISC/KB/en-us/305/704.HTM>):
//!   the hyphen and the apostrophe are "compared last, only after the regular alphabet
//!   characters are compared", so that `coop` and `co-op` stay together
//!   (`'coop' < 'co-op' < 'cork'`), while every other punctuation mark still sorts before
//!   alphanumerics. The same collation's nvarchar data sorts `abctest, abc-test,
//!   abctest1, abc-test1` ("Sorting and comparing unicode and binary data - why do I get a
//!   weird sort order?", <https://learn.microsoft.com/en-us/archive/blogs/chadboyd/sorting-and-comparing-unicode-and-binary-data-why-do-i-get-a-weird-sort-order>).
//!
//! Which rules a comparison uses follows data type precedence ("Data type precedence
//! (Transact-SQL)", <https://learn.microsoft.com/sql/t-sql/data-types/data-type-precedence-transact-sql>):
//! nvarchar outranks varchar, so `varchar_col > @P1` with an nvarchar parameter (how
//! tiberius binds a Rust `&str`/`String`) converts the column to nvarchar and compares
//! under the Unicode rules, while `ORDER BY varchar_col` sorts under the non-Unicode
//! ones. Keyset pagination mixing the two skips or repeats rows; `CAST(@P1 AS
//! varchar(n))` keeps both sides non-Unicode. The column's collation wins over the
//! parameter's ("COLLATE (Transact-SQL)",
//! <https://learn.microsoft.com/en-us/previous-versions/sql/sql-server-2012/ms184391(v=sql.110)>:
//! literals and variables take the database default, column references the column's),
//! and here both are the default anyway.
//!
//! Modelled, approximately: case folding (CI), accents significant (AS: `'e' <> 'é'`),
//! trailing spaces ignored, punctuation < digits < letters, the accented Latin-1 letters
//! of code page 1252 next to their base letter. The non-Unicode table weighs an accented
//! letter right after its base letter at the first level (`'éa' > 'eb'`); the Unicode
//! rules compare base letters across the whole string first, then accents
//! (`N'éa' < N'eb'`), then the hyphens and apostrophes (a string with them sorts after
//! the same string without). Not modelled: expansions (`æ` = `ae`, `ß` = `ss` under the
//! Unicode rules), the exact relative order of punctuation marks in sort order 52 (code
//! point order here), other collations. Equality is the same under both rule sets, so
//! primary-key uniqueness does not depend on them.

use std::cmp::Ordering;

use crate::mssql::types::SqlType;

/// The database (and server) default collation, the only one supported.
pub const DEFAULT: &str = "SQL_Latin1_General_CP1_CI_AS";

/// Whether `name` (from a `COLLATE` clause) names the supported collation.
pub fn is_supported(name: &str) -> bool {
    name.eq_ignore_ascii_case(DEFAULT) || name.eq_ignore_ascii_case("database_default")
}

/// Which of the collation's two rule sets applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rules {
    /// `char`/`varchar`: sort order 52 on code page 1252, character by character.
    #[default]
    NonUnicode,
    /// `nchar`/`nvarchar` (and varchar converted to nvarchar): Windows word sort.
    Unicode,
}

/// The rules a value of this type sorts by (non-string types: irrelevant, NonUnicode).
pub fn rules_of(ty: &SqlType) -> Rules {
    match ty {
        SqlType::NChar(_) | SqlType::NVarChar(_) => Rules::Unicode,
        _ => Rules::NonUnicode,
    }
}

/// Whether a type is a character string type (its values compare by collation).
pub fn is_text(ty: &SqlType) -> bool {
    matches!(
        ty,
        SqlType::Char(_) | SqlType::VarChar(_) | SqlType::NChar(_) | SqlType::NVarChar(_)
    )
}

/// The rules a comparison between these operand types uses: by data type precedence a
/// Unicode operand converts the others to nvarchar.
pub fn comparison_rules<'a>(types: impl IntoIterator<Item = &'a SqlType>) -> Rules {
    if types.into_iter().any(|t| rules_of(t) == Rules::Unicode) {
        Rules::Unicode
    } else {
        Rules::NonUnicode
    }
}

/// Compares two strings under the collation's `rules` (trailing spaces ignored, as
/// SQL Server pads the shorter string for comparison).
pub fn compare(a: &str, b: &str, rules: Rules) -> Ordering {
    let a = a.trim_end_matches(' ');
    let b = b.trim_end_matches(' ');
    if a.is_ascii() && b.is_ascii() {
        let (ab, bb) = (a.as_bytes(), b.as_bytes());
        // Without hyphens and apostrophes both rule sets reduce to one level on ASCII.
        if rules == Rules::NonUnicode || !(ab.iter().any(|&c| is_word_mark(c)) || bb.iter().any(|&c| is_word_mark(c))) {
            return ab
                .iter()
                .map(|&c| ASCII_WEIGHT[usize::from(c)])
                .cmp(bb.iter().map(|&c| ASCII_WEIGHT[usize::from(c)]));
        }
    }
    match rules {
        Rules::NonUnicode => a.chars().map(weight).cmp(b.chars().map(weight)),
        Rules::Unicode => word_sort(a, b),
    }
}

/// The hyphen-minus and the apostrophe, which word sort weighs last.
fn is_word_mark(c: u8) -> bool {
    c == b'-' || c == b'\''
}

/// Character classes in sort order: punctuation and symbols, digits, letters.
const PUNCT: u32 = 0;
const DIGIT: u32 = 1;
const LETTER: u32 = 2;

/// (class, base, accent): `base` is the case-folded, accent-stripped character.
fn fold(c: char) -> (u32, u32, u32) {
    if c.is_ascii() {
        let b = c as u8;
        return if b.is_ascii_digit() {
            (DIGIT, u32::from(b), 0)
        } else if b.is_ascii_alphabetic() {
            (LETTER, u32::from(b.to_ascii_lowercase()), 0)
        } else {
            (PUNCT, u32::from(b), 0)
        };
    }
    // Accents: 1 grave, 2 acute, 3 circumflex, 4 tilde, 5 diaeresis, 6 ring,
    // 7 cedilla, 8 stroke, 9 caron, 10 ligature, 11 eth, 12 sharp s.
    let (base, accent) = match c {
        'À' | 'à' => ('a', 1),
        'Á' | 'á' => ('a', 2),
        'Â' | 'â' => ('a', 3),
        'Ã' | 'ã' => ('a', 4),
        'Ä' | 'ä' => ('a', 5),
        'Å' | 'å' => ('a', 6),
        'Æ' | 'æ' => ('a', 10),
        'Ç' | 'ç' => ('c', 7),
        'È' | 'è' => ('e', 1),
        'É' | 'é' => ('e', 2),
        'Ê' | 'ê' => ('e', 3),
        'Ë' | 'ë' => ('e', 5),
        'Ì' | 'ì' => ('i', 1),
        'Í' | 'í' => ('i', 2),
        'Î' | 'î' => ('i', 3),
        'Ï' | 'ï' => ('i', 5),
        'Ð' | 'ð' => ('d', 11),
        'Ñ' | 'ñ' => ('n', 4),
        'Ò' | 'ò' => ('o', 1),
        'Ó' | 'ó' => ('o', 2),
        'Ô' | 'ô' => ('o', 3),
        'Õ' | 'õ' => ('o', 4),
        'Ö' | 'ö' => ('o', 5),
        'Ø' | 'ø' => ('o', 8),
        'Œ' | 'œ' => ('o', 10),
        'Š' | 'š' => ('s', 9),
        'ß' => ('s', 12),
        'Ù' | 'ù' => ('u', 1),
        'Ú' | 'ú' => ('u', 2),
        'Û' | 'û' => ('u', 3),
        'Ü' | 'ü' => ('u', 5),
        'Ý' | 'ý' => ('y', 2),
        'Ÿ' | 'ÿ' => ('y', 5),
        'Ž' | 'ž' => ('z', 9),
        _ => {
            let lower = c.to_lowercase().next().unwrap_or(c);
            let class = if c.is_alphabetic() {
                LETTER
            } else if c.is_numeric() {
                DIGIT
            } else {
                PUNCT
            };
            return (class, u32::from(lower), 0);
        }
    };
    (LETTER, u32::from(base), accent)
}

/// The single-level weight of the non-Unicode table (class, base, then accent).
fn weight(c: char) -> u32 {
    let (class, base, accent) = fold(c);
    (class << 26) | (base << 5) | accent
}

/// Weights of the ASCII characters (identical under both rule sets at the first level).
static ASCII_WEIGHT: [u32; 128] = {
    let mut t = [0u32; 128];
    let mut i = 0;
    while i < 128 {
        let b = i as u8;
        t[i] = if b.is_ascii_digit() {
            (DIGIT << 26) | ((b as u32) << 5)
        } else if b.is_ascii_alphabetic() {
            (LETTER << 26) | ((b.to_ascii_lowercase() as u32) << 5)
        } else {
            (PUNCT << 26) | ((b as u32) << 5)
        };
        i += 1;
    }
    t
};

/// The Unicode rules: base characters (hyphens and apostrophes skipped) across the
/// whole string, then accents, then (case being ignored) the skipped marks by position.
fn word_sort(a: &str, b: &str) -> Ordering {
    let marks = |c: &char| *c == '-' || *c == '\'';
    let primary = |s: &'_ str| {
        s.chars()
            .filter(|c| !marks(c))
            .map(fold)
            .map(|(class, base, _)| (class << 21) | base)
            .collect::<Vec<_>>()
    };
    let o = primary(a).cmp(&primary(b));
    if o != Ordering::Equal {
        return o;
    }
    let accents = |s: &'_ str| s.chars().filter(|c| !marks(c)).map(|c| fold(c).2).collect::<Vec<_>>();
    let o = accents(a).cmp(&accents(b));
    if o != Ordering::Equal {
        return o;
    }
    let special = |s: &'_ str| s.chars().enumerate().filter(|(_, c)| marks(c)).collect::<Vec<_>>();
    special(a).cmp(&special(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(mut v: Vec<&str>, rules: Rules) -> Vec<&str> {
        v.sort_by(|a, b| compare(a, b, rules));
        v
    }

    #[test]
    fn case_is_ignored_and_accents_count_under_both_rule_sets() {
        for rules in [Rules::NonUnicode, Rules::Unicode] {
            assert_eq!(compare("ABC", "abc", rules), Ordering::Equal);
            assert_eq!(compare("abc  ", "ABC", rules), Ordering::Equal);
            assert_ne!(compare("e", "é", rules), Ordering::Equal);
            assert_ne!(compare("co-op", "coop", rules), Ordering::Equal);
            assert_eq!(compare("ÉCOLE", "école", rules), Ordering::Equal);
        }
    }

    #[test]
    fn non_unicode_sorts_hyphen_and_apostrophe_as_punctuation() {
        let keys = vec!["b", "coop", "AC", "a-b", "co-op", "ab", "Co-Op2", "a'c"];
        assert_eq!(
            sorted(keys, Rules::NonUnicode),
            ["a'c", "a-b", "ab", "AC", "b", "co-op", "Co-Op2", "coop"]
        );
    }

    #[test]
    fn unicode_word_sort_keeps_coop_and_co_op_together() {
        let keys = vec!["b", "coop", "AC", "a-b", "co-op", "ab", "Co-Op2", "a'c"];
        assert_eq!(
            sorted(keys, Rules::Unicode),
            ["ab", "a-b", "AC", "a'c", "b", "coop", "co-op", "Co-Op2"]
        );
        // KB 305704's example and the abctest example.
        assert_eq!(
            sorted(vec!["car's", "cars", "carps", "car-s"], Rules::Unicode),
            ["carps", "cars", "car's", "car-s"]
        );
        assert_eq!(
            sorted(vec!["abc-test1", "abctest1", "abc-test", "abctest"], Rules::Unicode),
            ["abctest", "abc-test", "abctest1", "abc-test1"]
        );
        // Other punctuation still sorts first.
        assert_eq!(sorted(vec!["coat", "co_op"], Rules::Unicode), ["co_op", "coat"]);
    }

    #[test]
    fn unicode_rules_compare_base_letters_before_accents() {
        assert_eq!(compare("éa", "eb", Rules::Unicode), Ordering::Less);
        assert_eq!(compare("éa", "eb", Rules::NonUnicode), Ordering::Greater);
    }
}
