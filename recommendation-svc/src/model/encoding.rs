//! The binary form of a model's per-product weights, as stored.

/// Binary form of the per-product weights (little-endian: per product a
/// u32 count, then count × (u32 product, f32 weight)).
pub fn encode_neighbors(neighbors: &[Vec<(u32, f32)>]) -> Vec<u8> {
    let total: usize = neighbors.iter().map(|n| 4 + n.len() * 8).sum();
    let mut out = Vec::with_capacity(total);
    for list in neighbors {
        out.extend_from_slice(&(list.len() as u32).to_le_bytes());
        for &(j, w) in list {
            out.extend_from_slice(&j.to_le_bytes());
            out.extend_from_slice(&w.to_le_bytes());
        }
    }
    out
}

/// Reads [`encode_neighbors`]' output back for `items` products, checking
/// every index; `None` when the bytes are not such an encoding.
pub fn decode_neighbors(bytes: &[u8], items: usize) -> Option<Vec<Vec<(u32, f32)>>> {
    let mut at = 0usize;
    let u32_at = |at: &mut usize| -> Option<u32> {
        let b = bytes.get(*at..*at + 4)?;
        *at += 4;
        Some(u32::from_le_bytes(b.try_into().ok()?))
    };
    let mut out = Vec::with_capacity(items);
    for _ in 0..items {
        let n = u32_at(&mut at)? as usize;
        if n > items {
            return None;
        }
        let mut list = Vec::with_capacity(n);
        for _ in 0..n {
            let j = u32_at(&mut at)?;
            let w = f32::from_bits(u32_at(&mut at)?);
            if j as usize >= items || !w.is_finite() {
                return None;
            }
            list.push((j, w));
        }
        out.push(list);
    }
    (at == bytes.len()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_round_trip_and_garbage_is_refused() {
        let n = vec![vec![(1, 0.5), (2, 0.25)], vec![], vec![(0, 1.0)]];
        let bytes = encode_neighbors(&n);
        assert_eq!(decode_neighbors(&bytes, 3), Some(n));
        assert_eq!(decode_neighbors(&bytes, 2), None);
        assert_eq!(decode_neighbors(&bytes[..bytes.len() - 1], 3), None);
    }
}
