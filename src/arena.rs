//! Items of variable length (a header's keys, its shapes) kept one after another in blocks that
//! are never grown or moved: a growing `Vec` holds up to twice its contents and, while it moves,
//! three times, which a header made of many entries would turn into its peak memory.

/// The most items in one block (4 KiB of text, 32 KiB of dimensions), which bounds the spare room
/// at the end; a longer item gets a block of its own.
const BLOCK_MAX: usize = 1 << 12;
/// The most blocks: what the upper 16 bits of a slot's position can name (a 100 MB header needs
/// at most 25 000).
const MAX_BLOCKS: usize = 1 << 16;
/// The items of the first block.
const BLOCK_MIN: usize = 64;

/// Where an item is: its block and its first item in that block, then its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    at: u32,
    len: u32,
}

/// What an arena's blocks are: `Vec<T>` for slices of `T`, `String` for text (so that text comes
/// back as `str` without checking it again).
pub(crate) trait Block {
    type Items: ?Sized;
    fn with_capacity(n: usize) -> Self;
    fn len(&self) -> usize;
    fn capacity(&self) -> usize;
    fn items_len(items: &Self::Items) -> usize;
    fn append(&mut self, items: &Self::Items);
    fn range(&self, start: usize, end: usize) -> &Self::Items;
}

/// `Block` for a growable buffer whose items are the slice type `$items` and that appends with
/// `$append`.
macro_rules! block {
    ($(impl$([$($generics:tt)*])? for $block:ty => $items:ty, $append:ident;)*) => {$(
        impl$(<$($generics)*>)? Block for $block {
            type Items = $items;
            fn with_capacity(n: usize) -> Self {
                <$block>::with_capacity(n)
            }
            fn len(&self) -> usize {
                self.len()
            }
            fn capacity(&self) -> usize {
                self.capacity()
            }
            fn items_len(items: &$items) -> usize {
                items.len()
            }
            fn append(&mut self, items: &$items) {
                self.$append(items);
            }
            fn range(&self, start: usize, end: usize) -> &$items {
                // For text: each item was pushed whole, so its ends are char boundaries.
                &self[start..end]
            }
        }
    )*};
}

block! {
    impl[T: Copy] for Vec<T> => [T], extend_from_slice;
    impl for String => str, push_str;
}

/// An append-only list of items (slices, or text), each kept whole in one block.
#[derive(Debug)]
pub(crate) struct Arena<B> {
    blocks: Vec<B>,
    /// Items in all blocks: the next block is as large (within the bounds), so that the blocks'
    /// spare room stays below the contents, as a doubling `Vec`'s does.
    total: usize,
}

impl<B> Default for Arena<B> {
    fn default() -> Self {
        Arena {
            blocks: Vec::new(),
            total: 0,
        }
    }
}

impl<B: Block> Arena<B> {
    /// Appends `items`; `None` once the arena holds more blocks than a slot can name (far more
    /// than a 100 MB header needs).
    pub(crate) fn push(&mut self, items: &B::Items) -> Option<Slot> {
        let n = B::items_len(items);
        let len = u32::try_from(n).ok()?;
        let fits = |block: &B| block.capacity() - block.len() >= n && block.len() < BLOCK_MAX;
        if !self.blocks.last().is_some_and(fits) {
            if self.blocks.len() >= MAX_BLOCKS {
                return None;
            }
            let size = self.total.clamp(BLOCK_MIN, BLOCK_MAX).max(n);
            self.blocks.push(B::with_capacity(size));
        }
        let index = self.blocks.len() - 1;
        let block = &mut self.blocks[index];
        // Within a block of at most `BLOCK_MAX` items the offset fits its 16 bits; a longer item
        // is alone, at offset 0.
        let at = ((index as u32) << 16) | block.len() as u32;
        block.append(items);
        self.total += n;
        Some(Slot { at, len })
    }

    /// The items at `slot`, which this arena gave.
    pub(crate) fn get(&self, slot: Slot) -> &B::Items {
        let (block, start) = ((slot.at >> 16) as usize, (slot.at & 0xffff) as usize);
        self.blocks[block].range(start, start + slot.len as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_come_back_whole_across_blocks_and_long_ones_alone() {
        let mut arena = Arena::<Vec<u32>>::default();
        let mut slots = vec![arena.push(&[1u32, 2, 3]).unwrap()];
        let mut expected = vec![vec![1, 2, 3]];
        let first_block = arena.blocks[0].as_ptr();
        for i in 0..20_000u32 {
            let len = if i % 5_000 == 7 { BLOCK_MAX as u32 + 3 } else { i % 9 };
            let items: Vec<u32> = (0..len).map(|j| i ^ j).collect();
            slots.push(arena.push(&items).unwrap());
            expected.push(items);
        }
        for (slot, items) in slots.iter().zip(&expected) {
            assert_eq!(arena.get(*slot), &items[..]);
        }
        // A block is never grown, so never moved.
        assert_eq!(arena.blocks[0].as_ptr(), first_block);
        let spare: usize = arena.blocks.iter().map(|b| b.capacity() - b.len()).sum();
        assert!(spare <= arena.total, "{spare} spare for {}", arena.total);
    }

    #[test]
    fn text_round_trips() {
        let mut arena = Arena::<String>::default();
        let a = arena.push("layers_0.kernel").unwrap();
        let b = arena.push("").unwrap();
        let c = arena.push("ünïcode").unwrap();
        assert_eq!(
            (arena.get(a), arena.get(b), arena.get(c)),
            ("layers_0.kernel", "", "ünïcode")
        );
    }
}
