//! Hydrations as both dialects hold them: a JSON document per hydration,
//! beside the columns listings filter on.

use crate::error::StoreError;
use crate::rows::corrupt;
use sluice_core::hydrations::Hydration;

/// The states a hydration can still leave, as SQL list items.
pub const UNFINISHED: &str = "'pending', 'snapshot', 'catching_up', 'live', 'lagging'";

pub fn encode(h: &Hydration) -> String {
    serde_json::to_string(h).expect("a hydration serializes")
}

pub fn decode(doc: &str) -> Result<Hydration, StoreError> {
    serde_json::from_str(doc).map_err(|_| corrupt("hydration", doc))
}

pub fn decode_all(docs: Vec<String>) -> Result<Vec<Hydration>, StoreError> {
    docs.iter().map(|d| decode(d)).collect()
}

/// The `state` column of a hydration (its document says the same).
pub fn state(h: &Hydration) -> &'static str {
    h.state.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::hydrations::HydrationState;

    #[test]
    fn unfinished_names_every_state_that_is_not_final() {
        for s in HydrationState::ALL {
            let quoted = format!("'{}'", s.as_str());
            assert_eq!(UNFINISHED.contains(&quoted), !s.is_final(), "{quoted}");
        }
    }
}
