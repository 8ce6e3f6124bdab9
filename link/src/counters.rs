//! One way to count: [`counters!`](crate::counters) declares a struct of named `u64`
//! counters, and optionally an enum of reasons that picks one of them, so every layer's
//! statistics (`net::Stats`, `UdpStats`, `ConnStats`, ...) have the same shape: public
//! fields (`stats.rx_packets += 1`), `counters()`, `add`, and a `Display` that prints the
//! non-zero ones. It lives in the lowest crate so that every layer above can use it.

/// Declares counters.
///
/// **A set of counters.** Every field is a `u64`; doc comments and visibility are kept.
/// Attributes before `struct` are kept too (add `#[derive(Copy)]` where wanted; `Debug`,
/// `Clone`, `Default`, `PartialEq` and `Eq` are always derived). One nested set may follow
/// the struct, with the prefix its names take in `Display`:
///
/// ```
/// ustack_link::counters! {
///     /// Counters of one widget.
///     pub struct Widget {
///         /// Frames seen.
///         pub frames: u64,
///         pub bytes: u64,
///     }
/// }
/// ustack_link::counters! {
///     pub struct Host {
///         pub polls: u64,
///     }
///     /// Printed as `widget.<name>`.
///     pub widget: Widget => "widget.",
/// }
/// let mut h = Host::default();
/// h.polls += 2;
/// h.widget.frames += 1;
/// let mut sum = h.clone();
/// sum.add(&h);
/// assert_eq!(sum.counters(), [("polls", 4), ("frames", 2), ("bytes", 0)]);
/// assert_eq!(sum.to_string(), "polls 4\nwidget.frames 2\n");
/// ```
///
/// The generated items are `NAMES` (the set's own counter names, in order), `COUNT`,
/// `counters()` (an array of `(name, value)` of every counter in declaration order, then
/// the nested set's, unprefixed), `add(&mut self, &Self)` (field by field, for totals) and `Display`
/// (`name value` per line for every non-zero counter, nested ones prefixed).
///
/// **Reasons that pick a counter.** `enum Reason in Set { Variant => field, ... }`
/// declares a fieldless enum (`Debug`, `Clone`, `Copy`, `PartialEq`, `Eq`, `Hash`) with
/// `ALL`, `as_str()` (the field's name) and `Display`, and gives the existing counter set
/// `get(reason)` and `increment(reason)`. `enum Reason => struct Set { ... }` declares the
/// set as well, one counter per reason, with the reason's doc comment:
///
/// ```
/// ustack_link::counters! {
///     /// Why a frame was dropped.
///     pub enum Drop => pub struct Drops {
///         /// Too short.
///         Short => short,
///         BadSum => bad_checksum,
///     }
/// }
/// let mut d = Drops::default();
/// d.increment(Drop::BadSum);
/// assert_eq!(d.get(Drop::BadSum), 1);
/// assert_eq!(Drop::ALL.map(Drop::as_str), ["short", "bad_checksum"]);
/// assert_eq!(d.to_string(), "bad_checksum 1\n");
/// ```
#[macro_export]
macro_rules! counters {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $( $(#[$fmeta:meta])* $fvis:vis $field:ident : u64 ),* $(,)?
        }
        $( $(#[$nmeta:meta])* $nvis:vis $nested:ident : $nty:ty => $prefix:literal $(,)? )?
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        $vis struct $name {
            $( $(#[$fmeta])* $fvis $field: u64, )*
            $( $(#[$nmeta])* $nvis $nested: $nty, )?
        }

        impl $name {
            /// Names of this set's own counters, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$(stringify!($field)),*];

            /// How many counters [`Self::counters`] lists, a nested set's included.
            pub const COUNT: usize = $name::NAMES.len() $( + <$nty>::COUNT )?;

            /// `(name, value)` of every counter in declaration order (a nested set's
            /// last, unprefixed), for printing and JSON.
            pub fn counters(&self) -> [(&'static str, u64); $name::COUNT] {
                let mut all = [("", 0); $name::COUNT];
                let own = [$((stringify!($field), self.$field)),*];
                for (slot, counter) in all.iter_mut().zip(
                    own.into_iter() $( .chain(self.$nested.counters()) )?
                ) {
                    *slot = counter;
                }
                all
            }

            /// Adds `other`'s counters to these, field by field (for totals).
            pub fn add(&mut self, other: &Self) {
                $( self.$field += other.$field; )*
                $( self.$nested.add(&other.$nested); )?
            }
        }

        impl ::core::fmt::Display for $name {
            /// Non-zero counters, one `name value` per line.
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                for (name, value) in [$((stringify!($field), self.$field)),*] {
                    if value != 0 {
                        writeln!(f, "{name} {value}")?;
                    }
                }
                $(
                    for (name, value) in self.$nested.counters() {
                        if value != 0 {
                            writeln!(f, "{}{name} {value}", $prefix)?;
                        }
                    }
                )?
                Ok(())
            }
        }
    };

    (
        $(#[$meta:meta])*
        $vis:vis enum $key:ident => $svis:vis struct $set:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $field:ident ),* $(,)?
        }
    ) => {
        $crate::counters! {
            #[doc = concat!("One counter per [`", stringify!($key), "`].")]
            $svis struct $set {
                $( $(#[$vmeta])* pub $field: u64, )*
            }
        }
        $crate::counters! {
            $(#[$meta])*
            $vis enum $key in $set {
                $( $(#[$vmeta])* $variant => $field, )*
            }
        }
    };

    (
        $(#[$meta:meta])*
        $vis:vis enum $key:ident in $set:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $field:ident ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $key {
            $( $(#[$vmeta])* $variant, )*
        }

        impl $key {
            /// Every reason, in declaration order.
            pub const ALL: [$key; [$(stringify!($variant)),*].len()] = [$($key::$variant),*];

            /// The name of the counter this reason increments.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $key::$variant => stringify!($field), )*
                }
            }
        }

        impl ::core::fmt::Display for $key {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl $set {
            /// The counter of `reason`.
            pub fn get(&self, reason: $key) -> u64 {
                match reason {
                    $( $key::$variant => self.$field, )*
                }
            }

            /// Counts one more of `reason`.
            pub fn increment(&mut self, reason: $key) {
                match reason {
                    $( $key::$variant => self.$field += 1, )*
                }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    crate::counters! {
        /// Test set.
        #[derive(Copy)]
        pub struct Inner {
            /// First.
            pub a: u64,
            pub b: u64,
        }
    }

    crate::counters! {
        pub struct Outer {
            pub x: u64,
        }
        pub inner: Inner => "in.",
    }

    crate::counters! {
        pub enum Why in Outer {
            /// Picks `x`.
            X => x,
        }
    }

    #[test]
    fn add_sums_every_field_and_display_prints_non_zero_ones() {
        let o = Outer {
            x: 1,
            inner: Inner { a: 0, b: 3 },
        };
        let copy: Inner = o.inner;
        let mut total = o.clone();
        total.add(&o);
        assert_eq!(total.inner, Inner { a: 0, b: 6 });
        assert_eq!(copy.b, 3);
        assert_eq!(Outer::NAMES, ["x"]);
        assert_eq!(Inner::NAMES, ["a", "b"]);
        assert_eq!(total.counters(), [("x", 2), ("a", 0), ("b", 6)]);
        assert_eq!(Outer::COUNT, 3);
        assert_eq!(total.to_string(), "x 2\nin.b 6\n");
        assert_eq!(Outer::default().to_string(), "");
    }

    #[test]
    fn a_reason_picks_its_counter() {
        let mut o = Outer::default();
        o.increment(Why::X);
        o.increment(Why::X);
        assert_eq!((o.x, o.get(Why::X)), (2, 2));
        assert_eq!(Why::ALL, [Why::X]);
        assert_eq!(Why::X.to_string(), "x");
    }
}
