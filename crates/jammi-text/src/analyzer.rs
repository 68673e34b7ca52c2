//! How a text column is split into terms.

use tantivy::tokenizer::{AsciiFoldingFilter, Language, LowerCaser, RawTokenizer, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer};

/// A column's analyzer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Analyzer {
    /// Words, lowercased and ASCII-folded, the language's stop words dropped, stemmed
    /// (`english` is the default).
    Language(Language),
    /// Words, lowercased and ASCII-folded; no stop words, no stemming.
    Simple,
    /// The whole value is one term, exactly as written (ids, codes, tags).
    Raw,
}

impl Default for Analyzer {
    fn default() -> Self {
        Analyzer::Language(Language::English)
    }
}

const LANGUAGES: &[(&str, Language)] = &[
    ("arabic", Language::Arabic),
    ("danish", Language::Danish),
    ("dutch", Language::Dutch),
    ("english", Language::English),
    ("finnish", Language::Finnish),
    ("french", Language::French),
    ("german", Language::German),
    ("greek", Language::Greek),
    ("hungarian", Language::Hungarian),
    ("italian", Language::Italian),
    ("norwegian", Language::Norwegian),
    ("portuguese", Language::Portuguese),
    ("romanian", Language::Romanian),
    ("russian", Language::Russian),
    ("spanish", Language::Spanish),
    ("swedish", Language::Swedish),
    ("tamil", Language::Tamil),
    ("turkish", Language::Turkish),
];

impl std::str::FromStr for Analyzer {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "raw" => Ok(Analyzer::Raw),
            "simple" => Ok(Analyzer::Simple),
            other => LANGUAGES.iter().find(|(name, _)| *name == other).map(|(_, l)| Analyzer::Language(*l)).ok_or_else(|| {
                let names: Vec<&str> = LANGUAGES.iter().map(|(n, _)| *n).collect();
                format!("unknown text analyzer '{s}'; use raw, simple or a language: {}", names.join(", "))
            }),
        }
    }
}

impl std::fmt::Display for Analyzer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Analyzer::Raw => f.write_str("raw"),
            Analyzer::Simple => f.write_str("simple"),
            Analyzer::Language(l) => f.write_str(LANGUAGES.iter().find(|(_, x)| x == l).map_or("english", |(n, _)| n)),
        }
    }
}

impl Analyzer {
    /// The name it is registered under in an index.
    pub(crate) fn tokenizer_name(&self) -> String {
        format!("jammi_{self}")
    }

    pub(crate) fn build(&self) -> TextAnalyzer {
        match self {
            Analyzer::Raw => TextAnalyzer::builder(RawTokenizer::default()).build(),
            Analyzer::Simple => TextAnalyzer::builder(SimpleTokenizer::default()).filter(RemoveLongFilter::limit(40)).filter(LowerCaser).filter(AsciiFoldingFilter).build(),
            Analyzer::Language(language) => {
                let builder = TextAnalyzer::builder(SimpleTokenizer::default()).filter(RemoveLongFilter::limit(40)).filter(LowerCaser).filter(AsciiFoldingFilter);
                match StopWordFilter::new(*language) {
                    Some(stop) => builder.filter(stop).filter(Stemmer::new(*language)).build(),
                    None => builder.filter(Stemmer::new(*language)).build(),
                }
            }
        }
    }
}
