//! One table per enum of protocol names: each name is written once, and the lookups both
//! ways are generated from it as `match`es (as fast as hand-written ones).

/// Inside an `impl` of an enum whose unit variants each stand for one protocol name:
/// `names!(Type; Variant => "name", ...)` generates `known_from_name` (the variant of a
/// name), `known_name` (the name of a variant) and `NAMES` (every pair, in table order).
/// `Type` is the enum with `'static` for a lifetime it has; variants outside the table
/// (such as an `Other(Word)`) get `None` from `known_name`.
macro_rules! names {
    ($ty:ty; $($variant:ident => $name:literal),+ $(,)?) => {
        /// Every name of the table, with its variant.
        #[allow(dead_code)]
        pub(crate) const NAMES: &'static [($ty, &'static str)] = &[$((<$ty>::$variant, $name)),+];

        /// The variant a known name stands for.
        pub(crate) fn known_from_name(name: &str) -> Option<$ty> {
            match name {
                $($name => Some(<$ty>::$variant),)+
                _ => None,
            }
        }

        /// The name of a variant of the table.
        #[allow(unreachable_patterns)]
        pub(crate) fn known_name(&self) -> Option<&'static str> {
            match self {
                $(Self::$variant => Some($name),)+
                _ => None,
            }
        }

        /// The same variant of the table, detached from any lifetime.
        #[allow(unreachable_patterns, dead_code)]
        pub(crate) fn known_static(&self) -> Option<$ty> {
            match self {
                $(Self::$variant => Some(<$ty>::$variant),)+
                _ => None,
            }
        }
    };
}

pub(crate) use names;

#[cfg(test)]
mod tests {
    use crate::{Feature, Protocol, ReplyKind, Word};

    #[test]
    fn every_name_reads_back_to_its_variant() {
        for (kind, name) in ReplyKind::NAMES {
            assert_eq!(ReplyKind::from_name(Word::new(name).unwrap()), *kind);
            assert_eq!(kind.as_str(), *name);
            assert_eq!(kind.clone().into_owned(), *kind);
        }
        for (feature, name) in Feature::NAMES {
            assert_eq!(Feature::from_name(name).as_ref(), Ok(feature));
            assert_eq!(feature.as_str(), *name);
        }
        let protocols: Vec<Protocol> = Protocol::NAMES.iter().map(|(p, _)| *p).collect();
        assert_eq!(protocols, Protocol::ALL);
        for (protocol, name) in Protocol::NAMES {
            assert_eq!(name.parse(), Ok(*protocol));
        }
        assert_eq!(ReplyKind::NAMES.len(), 19);
    }
}
