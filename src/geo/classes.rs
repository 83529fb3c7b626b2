//! Location classes: the distinct (country, continent, coordinates) records a database
//! holds, interned and stored compactly.

use crate::model::Coordinates;

pub(super) type Decoded = (Option<[u8; 2]>, Option<[u8; 2]>, Option<Coordinates>);

/// A location class while compiling, and as stored by [`Classes::Exact`]: 24 bytes where
/// `Decoded` takes 32 (130 k of them).
/// `[0, 0]` is "no code"; NaN latitude is "no coordinates" (a NaN coordinate could not
/// be ranked by distance anyway).
#[derive(Debug, Clone, Copy)]
pub(super) struct Class {
    country: [u8; 2],
    continent: [u8; 2],
    lat: f64,
    lon: f64,
}

impl From<Decoded> for Class {
    fn from((country, continent, coords): Decoded) -> Class {
        let (lat, lon) = coords
            .filter(|c| !c.lat.is_nan())
            .map_or((f64::NAN, f64::NAN), |c| (c.lat, c.lon));
        Class {
            country: country.unwrap_or_default(),
            continent: continent.unwrap_or_default(),
            lat,
            lon,
        }
    }
}

impl Class {
    /// The same class, bit for bit (NaN "no coordinates" included).
    pub(super) fn same(&self, other: &Class) -> bool {
        self.country == other.country
            && self.continent == other.continent
            && self.lat.to_bits() == other.lat.to_bits()
            && self.lon.to_bits() == other.lon.to_bits()
    }

    /// A hash consistent with [`Class::same`].
    pub(super) fn hash(&self) -> u64 {
        use std::hash::{BuildHasher, BuildHasherDefault};
        BuildHasherDefault::<crate::model::Fx>::default().hash_one((
            self.country,
            self.continent,
            self.lat.to_bits(),
            self.lon.to_bits(),
        ))
    }

    pub(super) fn get(&self) -> Decoded {
        let code = |c: [u8; 2]| (c != [0, 0]).then_some(c);
        let coords = (!self.lat.is_nan()).then_some(Coordinates {
            lat: self.lat,
            lon: self.lon,
        });
        (code(self.country), code(self.continent), coords)
    }
}

/// The location classes of a compiled database, in the smaller layout that keeps every
/// coordinate exactly as decoded.
#[derive(Debug)]
pub(super) enum Classes {
    /// Coordinates in whole units of 10^-7 degree: 12 bytes a class instead of 24, 1.5 MiB
    /// less resident for GeoLite2-City's 133 k classes. A lookup still returns the very
    /// f64 the mmdb reader returns: a class is converted only if its coordinates come
    /// back bit for bit. GeoLite2's are decimals of at most 4 places, but not all of them
    /// were written as the nearest double (18.790399999999998 is one), so the few that do
    /// not come back keep their f64 values in `odd`.
    Fixed {
        classes: Box<[FixedClass]>,
        /// (class index, class) of the classes marked [`ODD`], sorted by index.
        odd: Box<[(u32, Class)]>,
    },
    /// The f64 coordinates as decoded: for a database where more than one class in
    /// [`MAX_ODD_SHARE`] would be odd.
    Exact(Box<[Class]>),
}

/// At most one odd class in 8: each costs 32 bytes more in the side table, so the
/// layout still saves at least 8 bytes a class, and the binary search on an odd class
/// stays a handful of steps. GeoLite2-City has 2,990 odd classes of 133,483 (2.2%), each
/// coordinate one ulp from the nearest double of its 4-decimal value.
pub(super) const MAX_ODD_SHARE: usize = 8;

impl Classes {
    pub(super) fn new(classes: Vec<Class>) -> Classes {
        let mut fixed = Vec::with_capacity(classes.len());
        let mut odd = Vec::new();
        for (i, c) in classes.iter().enumerate() {
            fixed.push(FixedClass::exactly(c).unwrap_or_else(|| {
                odd.push((i as u32, *c));
                FixedClass {
                    country: c.country,
                    continent: c.continent,
                    lat: ODD,
                    lon: ODD,
                }
            }));
            if odd.len() > classes.len() / MAX_ODD_SHARE {
                return Classes::Exact(classes.into_boxed_slice());
            }
        }
        Classes::Fixed {
            classes: fixed.into_boxed_slice(),
            odd: odd.into_boxed_slice(),
        }
    }

    pub(super) fn len(&self) -> usize {
        match self {
            Classes::Fixed { classes, .. } => classes.len(),
            Classes::Exact(c) => c.len(),
        }
    }

    pub(super) fn heap_bytes(&self) -> usize {
        match self {
            Classes::Fixed { classes, odd } => {
                std::mem::size_of_val(&**classes) + std::mem::size_of_val(&**odd)
            }
            Classes::Exact(c) => std::mem::size_of_val(&**c),
        }
    }

    pub(super) fn get(&self, i: usize) -> Decoded {
        match self {
            Classes::Fixed { classes, odd } => {
                let c = &classes[i];
                if c.lat == ODD {
                    let k = odd
                        .binary_search_by_key(&(i as u32), |&(j, _)| j)
                        .expect("every odd class is in the side table");
                    odd[k].1.get()
                } else {
                    c.class().get()
                }
            }
            Classes::Exact(c) => c[i].get(),
        }
    }
}

/// Degrees to whole units of a fixed-point coordinate: 7 decimals, and ±180° is
/// ±1.8e9, inside an i32.
pub(super) const FIXED_SCALE: f64 = 1e7;
/// "No coordinates": no coordinate within ±180° converts to it.
pub(super) const NO_COORD: i32 = i32::MIN;
/// "Coordinates in the side table": nor to this.
pub(super) const ODD: i32 = i32::MIN + 1;

/// A [`Class`] with fixed-point coordinates.
#[derive(Debug, Clone, Copy)]
pub(super) struct FixedClass {
    country: [u8; 2],
    continent: [u8; 2],
    lat: i32,
    lon: i32,
}

impl FixedClass {
    /// The class in fixed point, if both coordinates come back bit for bit: a decimal
    /// of at most 7 places parsed to f64, scaled, rounded and divided again, is the
    /// same correctly rounded f64 (both are the nearest double to one rational number).
    pub(super) fn exactly(c: &Class) -> Option<FixedClass> {
        let fix = |x: f64| -> Option<i32> {
            if x.is_nan() {
                return Some(NO_COORD);
            }
            let k = (x * FIXED_SCALE).round();
            if k.abs() >= f64::from(i32::MAX) {
                return None;
            }
            // From the i32, as `class` will: -0.0 comes back as 0.0 and is refused.
            let k = k as i32;
            ((f64::from(k) / FIXED_SCALE).to_bits() == x.to_bits()).then_some(k)
        };
        Some(FixedClass {
            country: c.country,
            continent: c.continent,
            lat: fix(c.lat)?,
            lon: fix(c.lon)?,
        })
    }

    pub(super) fn class(&self) -> Class {
        let float = |k: i32| {
            if k == NO_COORD {
                f64::NAN
            } else {
                f64::from(k) / FIXED_SCALE
            }
        };
        Class {
            country: self.country,
            continent: self.continent,
            lat: float(self.lat),
            lon: float(self.lon),
        }
    }
}
