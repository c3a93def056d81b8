//! The unstable sort etcd 3.5 orders range results with (Go 1.16's `sort.Sort`), rewritten
//! for slices, so that results whose sort keys tie come back in exactly etcd's order.
//!
//! A stable sort would be the natural choice, but clients (and the differential tests
//! against etcd) see the order of ties; matching etcd byte for byte means matching its
//! algorithm: quicksort with a median-of-three (or ninther) pivot, a guard against many
//! duplicates, heapsort past a depth limit, and a gap-6 shell pass before insertion sort on
//! short runs.

/// Sorts `data` by `less`, leaving ties exactly where Go 1.16's `sort.Sort` leaves them.
pub fn sort_by<T>(data: &mut [T], less: &dyn Fn(&T, &T) -> bool) {
    let depth_limit = 2 * (usize::BITS - data.len().leading_zeros()) as usize;
    quick_sort(data, 0, data.len(), depth_limit, less);
}

fn lt<T>(data: &[T], i: usize, j: usize, less: &dyn Fn(&T, &T) -> bool) -> bool {
    less(&data[i], &data[j])
}

fn insertion_sort<T>(data: &mut [T], a: usize, b: usize, less: &dyn Fn(&T, &T) -> bool) {
    for i in a + 1..b {
        let mut j = i;
        while j > a && lt(data, j, j - 1, less) {
            data.swap(j, j - 1);
            j -= 1;
        }
    }
}

fn sift_down<T>(data: &mut [T], lo: usize, hi: usize, first: usize, less: &dyn Fn(&T, &T) -> bool) {
    let mut root = lo;
    loop {
        let mut child = 2 * root + 1;
        if child >= hi {
            return;
        }
        if child + 1 < hi && lt(data, first + child, first + child + 1, less) {
            child += 1;
        }
        if !lt(data, first + root, first + child, less) {
            return;
        }
        data.swap(first + root, first + child);
        root = child;
    }
}

fn heap_sort<T>(data: &mut [T], a: usize, b: usize, less: &dyn Fn(&T, &T) -> bool) {
    let first = a;
    let hi = b - a;
    for i in (0..=(hi.saturating_sub(1)) / 2).rev() {
        sift_down(data, i, hi, first, less);
    }
    for i in (0..hi).rev() {
        data.swap(first, first + i);
        sift_down(data, 0, i, first, less);
    }
}

/// Orders data[m0] <= data[m1] <= data[m2] (so the median lands at m1).
fn median_of_three<T>(
    data: &mut [T],
    m1: usize,
    m0: usize,
    m2: usize,
    less: &dyn Fn(&T, &T) -> bool,
) {
    if lt(data, m1, m0, less) {
        data.swap(m1, m0);
    }
    if lt(data, m2, m1, less) {
        data.swap(m2, m1);
        if lt(data, m1, m0, less) {
            data.swap(m1, m0);
        }
    }
}

/// Partitions data[lo..hi] around a pivot; returns (mid_lo, mid_hi) such that data[lo..mid_lo]
/// sorts before the pivot, data[mid_hi..hi] after it, and data[mid_lo..mid_hi] equals it.
fn do_pivot<T>(
    data: &mut [T],
    lo: usize,
    hi: usize,
    less: &dyn Fn(&T, &T) -> bool,
) -> (usize, usize) {
    let m = (lo + hi) / 2;
    if hi - lo > 40 {
        let s = (hi - lo) / 8;
        median_of_three(data, lo, lo + s, lo + 2 * s, less);
        median_of_three(data, m, m - s, m + s, less);
        median_of_three(data, hi - 1, hi - 1 - s, hi - 1 - 2 * s, less);
    }
    median_of_three(data, lo, m, hi - 1, less);

    // data[lo] is the pivot; data[lo+1..a] < pivot; data[a..b] <= pivot; data[b..c]
    // unexamined; data[c..hi-1] > pivot; data[hi-1] >= pivot.
    let pivot = lo;
    let (mut a, mut c) = (lo + 1, hi - 1);
    while a < c && lt(data, a, pivot, less) {
        a += 1;
    }
    let mut b = a;
    loop {
        while b < c && !lt(data, pivot, b, less) {
            b += 1;
        }
        while b < c && lt(data, pivot, c - 1, less) {
            c -= 1;
        }
        if b >= c {
            break;
        }
        data.swap(b, c - 1);
        b += 1;
        c -= 1;
    }
    // Few elements above the pivot suggest many equal to it.
    let mut protect = hi - c < 5;
    if !protect && hi - c < (hi - lo) / 4 {
        let mut dups = 0;
        if !lt(data, pivot, hi - 1, less) {
            data.swap(c, hi - 1);
            c += 1;
            dups += 1;
        }
        if !lt(data, b - 1, pivot, less) {
            b -= 1;
            dups += 1;
        }
        if !lt(data, m, pivot, less) {
            data.swap(m, b - 1);
            b -= 1;
            dups += 1;
        }
        protect = dups > 1;
    }
    if protect {
        // Gather the elements equal to the pivot into data[b..c].
        loop {
            while a < b && !lt(data, b - 1, pivot, less) {
                b -= 1;
            }
            while a < b && lt(data, a, pivot, less) {
                a += 1;
            }
            if a >= b {
                break;
            }
            data.swap(a, b - 1);
            a += 1;
            b -= 1;
        }
    }
    data.swap(pivot, b - 1);
    (b - 1, c)
}

fn quick_sort<T>(
    data: &mut [T],
    mut a: usize,
    mut b: usize,
    mut depth: usize,
    less: &dyn Fn(&T, &T) -> bool,
) {
    while b - a > 12 {
        if depth == 0 {
            heap_sort(data, a, b, less);
            return;
        }
        depth -= 1;
        let (mid_lo, mid_hi) = do_pivot(data, a, b, less);
        // Recursing into the smaller side bounds the stack depth by log2(len).
        if mid_lo - a < b - mid_hi {
            quick_sort(data, a, mid_lo, depth, less);
            a = mid_hi;
        } else {
            quick_sort(data, mid_hi, b, depth, less);
            b = mid_lo;
        }
    }
    if b - a > 1 {
        for i in a + 6..b {
            if lt(data, i, i - 6, less) {
                data.swap(i, i - 6);
            }
        }
        insertion_sort(data, a, b, less);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn sorts_like_any_correct_sort(mut values in prop::collection::vec(0u8..20, 0..300)) {
            let mut expected = values.clone();
            expected.sort();
            sort_by(&mut values, &|a, b| a < b);
            prop_assert_eq!(values, expected);
        }

        #[test]
        fn keeps_every_element(values in prop::collection::vec((0u8..5, any::<u16>()), 0..300)) {
            let mut sorted = values.clone();
            sort_by(&mut sorted, &|a, b| a.0 < b.0);
            prop_assert!(sorted.windows(2).all(|w| w[0].0 <= w[1].0));
            let (mut x, mut y) = (values, sorted);
            x.sort();
            y.sort();
            prop_assert_eq!(x, y);
        }
    }

    /// Sorts items (group, position) by group alone and returns the positions in the order
    /// the sort left them.
    fn tie_order(n: usize, group: impl Fn(usize) -> usize, descending: bool) -> Vec<usize> {
        let mut items: Vec<(usize, usize)> = (0..n).map(|i| (group(i), i)).collect();
        if descending {
            sort_by(&mut items, &|a, b| b.0 < a.0);
        } else {
            sort_by(&mut items, &|a, b| a.0 < b.0);
        }
        items.into_iter().map(|(_, i)| i).collect()
    }

    /// Tie orders of Go 1.16's sort.Sort, recorded from an independent rendition of it that
    /// reproduced etcd 3.5.1's range results in 104 probed combinations.
    #[test]
    fn ties_land_where_go_1_16_puts_them() {
        assert_eq!(
            tie_order(9, |i| (i * 7 + 3) % 3, false),
            [0, 3, 6, 1, 4, 7, 2, 5, 8]
        );
        assert_eq!(
            tie_order(9, |i| (i * 7 + 3) % 3, true),
            [2, 5, 8, 1, 4, 7, 0, 3, 6]
        );
        assert_eq!(
            tie_order(30, |i| (i * 7 + 3) % 4, false),
            [
                7, 19, 11, 3, 27, 23, 15, 6, 26, 18, 10, 2, 14, 22, 13, 25, 9, 17, 5, 1, 21, 29,
                20, 16, 24, 12, 8, 4, 28, 0
            ]
        );
        assert_eq!(
            tie_order(30, |i| (i * 7 + 3) % 4, true),
            [
                0, 12, 28, 20, 4, 8, 24, 16, 5, 9, 25, 17, 1, 13, 21, 29, 14, 2, 18, 26, 10, 6, 22,
                23, 7, 3, 19, 27, 11, 15
            ]
        );
        assert_eq!(
            tie_order(45, |i| (i * 7 + 3) % 2, false),
            [
                27, 1, 43, 3, 41, 5, 39, 7, 37, 9, 35, 11, 33, 13, 31, 15, 29, 17, 25, 19, 23, 21,
                0, 20, 24, 18, 26, 22, 28, 16, 30, 14, 32, 12, 34, 10, 36, 8, 38, 6, 40, 4, 42, 2,
                44
            ]
        );
        assert_eq!(
            tie_order(45, |i| (i * 7 + 3) % 2, true),
            [
                10, 42, 2, 40, 4, 0, 6, 44, 8, 38, 36, 32, 12, 30, 14, 28, 16, 22, 18, 26, 20, 24,
                34, 23, 21, 25, 19, 27, 15, 29, 13, 31, 11, 33, 39, 35, 5, 37, 9, 7, 3, 41, 1, 43,
                17
            ]
        );
        assert_eq!(
            tie_order(100, |i| (i * 13 + 5) % 6, false),
            [
                85, 1, 55, 43, 61, 97, 37, 7, 67, 31, 73, 91, 25, 13, 79, 19, 49, 68, 2, 56, 20,
                44, 80, 14, 98, 62, 26, 38, 74, 92, 50, 8, 32, 86, 33, 9, 63, 69, 27, 39, 87, 75,
                57, 3, 21, 45, 15, 81, 51, 93, 99, 82, 52, 22, 4, 16, 46, 76, 58, 88, 28, 70, 40,
                94, 64, 34, 10, 35, 65, 11, 41, 71, 89, 29, 95, 59, 5, 77, 47, 23, 53, 17, 83, 48,
                84, 18, 78, 12, 24, 72, 90, 30, 66, 6, 36, 60, 96, 42, 54, 0
            ]
        );
    }
}
