//! Static ISO 3166-1 alpha-2 country table: continent and representative coordinates.
//!
//! A `client_networks` override such as `"198.18.0.0/15" = { country = "DE" }` names only a
//! country, but routing needs more than that: fences and latency rows match on the
//! continent (`continent:EU`), and `nearest` ranks regions by great-circle distance from
//! the client's coordinates. This table supplies both, so a country-only override behaves
//! like a GeoIP hit for that country.
//!
//! * Continents use the MaxMind / GeoNames two-letter codes (`AF`, `AN`, `AS`, `EU`, `NA`,
//!   `OC`, `SA`), with their conventions for the edge cases: Russia and Cyprus are `EU`;
//!   Turkey, Armenia, Azerbaijan, Georgia and Kazakhstan are `AS`; Egypt is `AF`; Central
//!   America and the Caribbean are `NA`; Timor-Leste is `OC`; the sub-Antarctic
//!   territories (`BV`, `GS`, `HM`, `TF`) are `AN`.
//! * Coordinates are approximate (two decimals): the capital, or the main settlement for
//!   territories without one. They are good enough for choosing the nearest region, not for
//!   anything finer.
//! * The table holds the 249 officially assigned codes plus `XK` (Kosovo), a user-assigned
//!   code that MaxMind, DB-IP and GeoNames return, so it can appear in GeoIP answers.
//!
//! The module is pure `std` and allocation-free; lookups are a binary search over a sorted
//! static slice.

/// One country: ISO code, continent code, representative coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Country {
    /// ISO 3166-1 alpha-2 code, upper case ASCII (for example `*b"DE"`).
    pub code: [u8; 2],
    /// MaxMind / GeoNames continent code, upper case ASCII (for example `*b"EU"`).
    pub continent: [u8; 2],
    /// Latitude of the representative point, degrees north (negative = south).
    pub lat: f64,
    /// Longitude of the representative point, degrees east (negative = west).
    pub lon: f64,
}

impl Country {
    /// The ISO code as a string slice (always two upper-case ASCII letters).
    pub fn code_str(&self) -> &str {
        // The table only holds ASCII letters, so this never fails.
        std::str::from_utf8(&self.code).unwrap_or("??")
    }

    /// The continent code as a string slice (always one of the seven continent codes).
    pub fn continent_str(&self) -> &str {
        std::str::from_utf8(&self.continent).unwrap_or("??")
    }
}

/// The seven continent codes used by MaxMind and GeoNames, sorted.
const CONTINENTS: [&str; 7] = ["AF", "AN", "AS", "EU", "NA", "OC", "SA"];

/// Looks up an upper-case ISO 3166-1 alpha-2 code (case-insensitive input accepted).
///
/// Returns `None` for anything that is not two ASCII letters or is not an assigned code
/// (for example `"UK"`, which is reserved; the United Kingdom is `"GB"`).
pub fn country(code: &str) -> Option<&'static Country> {
    let &[a, b] = code.as_bytes() else {
        return None;
    };
    if !a.is_ascii_alphabetic() || !b.is_ascii_alphabetic() {
        return None;
    }
    let key = [a.to_ascii_uppercase(), b.to_ascii_uppercase()];
    COUNTRIES
        .binary_search_by(|c| c.code.cmp(&key))
        .ok()
        .map(|i| &COUNTRIES[i])
}

/// True for the seven continent codes above.
///
/// The match is exact and case-sensitive (`"EU"`, not `"eu"`), because GeoIP databases
/// always return upper-case continent codes and a lower-case key would never match one.
pub fn is_continent(code: &str) -> bool {
    CONTINENTS.contains(&code)
}

const fn c(code: &[u8; 2], continent: &[u8; 2], lat: f64, lon: f64) -> Country {
    Country {
        code: *code,
        continent: *continent,
        lat,
        lon,
    }
}

/// Sorted by `code`; one line per country: code, continent, lat, lon (capital or main town).
static COUNTRIES: &[Country] = &[
    c(b"AD", b"EU", 42.51, 1.52),     // Andorra la Vella
    c(b"AE", b"AS", 24.45, 54.38),    // Abu Dhabi
    c(b"AF", b"AS", 34.53, 69.17),    // Kabul
    c(b"AG", b"NA", 17.12, -61.85),   // St. John's
    c(b"AI", b"NA", 18.22, -63.06),   // The Valley
    c(b"AL", b"EU", 41.33, 19.82),    // Tirana
    c(b"AM", b"AS", 40.18, 44.51),    // Yerevan
    c(b"AO", b"AF", -8.84, 13.23),    // Luanda
    c(b"AQ", b"AN", -77.85, 166.67),  // McMurdo Station
    c(b"AR", b"SA", -34.60, -58.38),  // Buenos Aires
    c(b"AS", b"OC", -14.28, -170.70), // Pago Pago
    c(b"AT", b"EU", 48.21, 16.37),    // Vienna
    c(b"AU", b"OC", -35.28, 149.13),  // Canberra
    c(b"AW", b"NA", 12.52, -70.03),   // Oranjestad
    c(b"AX", b"EU", 60.10, 19.94),    // Mariehamn
    c(b"AZ", b"AS", 40.41, 49.87),    // Baku
    c(b"BA", b"EU", 43.86, 18.41),    // Sarajevo
    c(b"BB", b"NA", 13.10, -59.62),   // Bridgetown
    c(b"BD", b"AS", 23.81, 90.41),    // Dhaka
    c(b"BE", b"EU", 50.85, 4.35),     // Brussels
    c(b"BF", b"AF", 12.37, -1.52),    // Ouagadougou
    c(b"BG", b"EU", 42.70, 23.32),    // Sofia
    c(b"BH", b"AS", 26.23, 50.59),    // Manama
    c(b"BI", b"AF", -3.43, 29.92),    // Gitega
    c(b"BJ", b"AF", 6.50, 2.60),      // Porto-Novo
    c(b"BL", b"NA", 17.90, -62.85),   // Gustavia
    c(b"BM", b"NA", 32.29, -64.78),   // Hamilton
    c(b"BN", b"AS", 4.90, 114.94),    // Bandar Seri Begawan
    c(b"BO", b"SA", -16.50, -68.15),  // La Paz (seat of government)
    c(b"BQ", b"NA", 12.15, -68.27),   // Kralendijk
    c(b"BR", b"SA", -15.79, -47.88),  // Brasília
    c(b"BS", b"NA", 25.05, -77.35),   // Nassau
    c(b"BT", b"AS", 27.47, 89.64),    // Thimphu
    c(b"BV", b"AN", -54.42, 3.36),    // Bouvet Island
    c(b"BW", b"AF", -24.65, 25.91),   // Gaborone
    c(b"BY", b"EU", 53.90, 27.56),    // Minsk
    c(b"BZ", b"NA", 17.25, -88.77),   // Belmopan
    c(b"CA", b"NA", 45.42, -75.70),   // Ottawa
    c(b"CC", b"AS", -12.19, 96.83),   // West Island
    c(b"CD", b"AF", -4.32, 15.31),    // Kinshasa
    c(b"CF", b"AF", 4.36, 18.56),     // Bangui
    c(b"CG", b"AF", -4.26, 15.24),    // Brazzaville
    c(b"CH", b"EU", 46.95, 7.45),     // Bern
    c(b"CI", b"AF", 6.83, -5.29),     // Yamoussoukro
    c(b"CK", b"OC", -21.21, -159.78), // Avarua
    c(b"CL", b"SA", -33.45, -70.67),  // Santiago
    c(b"CM", b"AF", 3.87, 11.52),     // Yaoundé
    c(b"CN", b"AS", 39.90, 116.41),   // Beijing
    c(b"CO", b"SA", 4.71, -74.07),    // Bogotá
    c(b"CR", b"NA", 9.93, -84.08),    // San José
    c(b"CU", b"NA", 23.11, -82.37),   // Havana
    c(b"CV", b"AF", 14.93, -23.51),   // Praia
    c(b"CW", b"NA", 12.11, -68.93),   // Willemstad
    c(b"CX", b"OC", -10.42, 105.68),  // Flying Fish Cove
    c(b"CY", b"EU", 35.17, 33.36),    // Nicosia
    c(b"CZ", b"EU", 50.08, 14.44),    // Prague
    c(b"DE", b"EU", 52.52, 13.40),    // Berlin
    c(b"DJ", b"AF", 11.59, 43.15),    // Djibouti
    c(b"DK", b"EU", 55.68, 12.57),    // Copenhagen
    c(b"DM", b"NA", 15.30, -61.39),   // Roseau
    c(b"DO", b"NA", 18.49, -69.93),   // Santo Domingo
    c(b"DZ", b"AF", 36.75, 3.06),     // Algiers
    c(b"EC", b"SA", -0.18, -78.47),   // Quito
    c(b"EE", b"EU", 59.44, 24.75),    // Tallinn
    c(b"EG", b"AF", 30.04, 31.24),    // Cairo
    c(b"EH", b"AF", 27.15, -13.20),   // Laayoune
    c(b"ER", b"AF", 15.32, 38.93),    // Asmara
    c(b"ES", b"EU", 40.42, -3.70),    // Madrid
    c(b"ET", b"AF", 9.03, 38.74),     // Addis Ababa
    c(b"FI", b"EU", 60.17, 24.94),    // Helsinki
    c(b"FJ", b"OC", -18.14, 178.44),  // Suva
    c(b"FK", b"SA", -51.70, -57.85),  // Stanley
    c(b"FM", b"OC", 6.92, 158.16),    // Palikir
    c(b"FO", b"EU", 62.01, -6.77),    // Tórshavn
    c(b"FR", b"EU", 48.86, 2.35),     // Paris
    c(b"GA", b"AF", 0.42, 9.47),      // Libreville
    c(b"GB", b"EU", 51.51, -0.13),    // London
    c(b"GD", b"NA", 12.06, -61.75),   // St. George's
    c(b"GE", b"AS", 41.72, 44.79),    // Tbilisi
    c(b"GF", b"SA", 4.92, -52.33),    // Cayenne
    c(b"GG", b"EU", 49.46, -2.54),    // St Peter Port
    c(b"GH", b"AF", 5.60, -0.19),     // Accra
    c(b"GI", b"EU", 36.14, -5.35),    // Gibraltar
    c(b"GL", b"NA", 64.18, -51.72),   // Nuuk
    c(b"GM", b"AF", 13.45, -16.58),   // Banjul
    c(b"GN", b"AF", 9.64, -13.58),    // Conakry
    c(b"GP", b"NA", 16.00, -61.73),   // Basse-Terre
    c(b"GQ", b"AF", 3.75, 8.78),      // Malabo
    c(b"GR", b"EU", 37.98, 23.73),    // Athens
    c(b"GS", b"AN", -54.28, -36.51),  // Grytviken
    c(b"GT", b"NA", 14.63, -90.51),   // Guatemala City
    c(b"GU", b"OC", 13.48, 144.75),   // Hagåtña
    c(b"GW", b"AF", 11.86, -15.60),   // Bissau
    c(b"GY", b"SA", 6.80, -58.16),    // Georgetown
    c(b"HK", b"AS", 22.32, 114.17),   // Hong Kong
    c(b"HM", b"AN", -53.10, 73.52),   // Heard Island
    c(b"HN", b"NA", 14.07, -87.19),   // Tegucigalpa
    c(b"HR", b"EU", 45.81, 15.98),    // Zagreb
    c(b"HT", b"NA", 18.54, -72.34),   // Port-au-Prince
    c(b"HU", b"EU", 47.50, 19.04),    // Budapest
    c(b"ID", b"AS", -6.21, 106.85),   // Jakarta
    c(b"IE", b"EU", 53.35, -6.26),    // Dublin
    c(b"IL", b"AS", 31.77, 35.21),    // Jerusalem
    c(b"IM", b"EU", 54.15, -4.48),    // Douglas
    c(b"IN", b"AS", 28.61, 77.21),    // New Delhi
    c(b"IO", b"AS", -7.31, 72.41),    // Diego Garcia
    c(b"IQ", b"AS", 33.31, 44.36),    // Baghdad
    c(b"IR", b"AS", 35.69, 51.39),    // Tehran
    c(b"IS", b"EU", 64.15, -21.94),   // Reykjavík
    c(b"IT", b"EU", 41.90, 12.50),    // Rome
    c(b"JE", b"EU", 49.19, -2.11),    // Saint Helier
    c(b"JM", b"NA", 18.00, -76.79),   // Kingston
    c(b"JO", b"AS", 31.95, 35.93),    // Amman
    c(b"JP", b"AS", 35.68, 139.69),   // Tokyo
    c(b"KE", b"AF", -1.29, 36.82),    // Nairobi
    c(b"KG", b"AS", 42.87, 74.59),    // Bishkek
    c(b"KH", b"AS", 11.56, 104.92),   // Phnom Penh
    c(b"KI", b"OC", 1.33, 172.98),    // South Tarawa
    c(b"KM", b"AF", -11.70, 43.26),   // Moroni
    c(b"KN", b"NA", 17.30, -62.72),   // Basseterre
    c(b"KP", b"AS", 39.04, 125.76),   // Pyongyang
    c(b"KR", b"AS", 37.57, 126.98),   // Seoul
    c(b"KW", b"AS", 29.38, 47.98),    // Kuwait City
    c(b"KY", b"NA", 19.29, -81.38),   // George Town
    c(b"KZ", b"AS", 51.17, 71.45),    // Astana
    c(b"LA", b"AS", 17.98, 102.63),   // Vientiane
    c(b"LB", b"AS", 33.89, 35.50),    // Beirut
    c(b"LC", b"NA", 14.01, -60.99),   // Castries
    c(b"LI", b"EU", 47.14, 9.52),     // Vaduz
    c(b"LK", b"AS", 6.93, 79.86),     // Colombo
    c(b"LR", b"AF", 6.30, -10.80),    // Monrovia
    c(b"LS", b"AF", -29.31, 27.48),   // Maseru
    c(b"LT", b"EU", 54.69, 25.28),    // Vilnius
    c(b"LU", b"EU", 49.61, 6.13),     // Luxembourg
    c(b"LV", b"EU", 56.95, 24.11),    // Riga
    c(b"LY", b"AF", 32.89, 13.19),    // Tripoli
    c(b"MA", b"AF", 34.02, -6.83),    // Rabat
    c(b"MC", b"EU", 43.74, 7.42),     // Monaco
    c(b"MD", b"EU", 47.01, 28.86),    // Chișinău
    c(b"ME", b"EU", 42.44, 19.26),    // Podgorica
    c(b"MF", b"NA", 18.07, -63.08),   // Marigot
    c(b"MG", b"AF", -18.88, 47.51),   // Antananarivo
    c(b"MH", b"OC", 7.09, 171.38),    // Majuro
    c(b"MK", b"EU", 42.00, 21.43),    // Skopje
    c(b"ML", b"AF", 12.64, -8.00),    // Bamako
    c(b"MM", b"AS", 19.76, 96.08),    // Naypyidaw
    c(b"MN", b"AS", 47.89, 106.91),   // Ulaanbaatar
    c(b"MO", b"AS", 22.20, 113.54),   // Macao
    c(b"MP", b"OC", 15.18, 145.75),   // Saipan
    c(b"MQ", b"NA", 14.60, -61.07),   // Fort-de-France
    c(b"MR", b"AF", 18.08, -15.98),   // Nouakchott
    c(b"MS", b"NA", 16.79, -62.21),   // Brades
    c(b"MT", b"EU", 35.90, 14.51),    // Valletta
    c(b"MU", b"AF", -20.16, 57.50),   // Port Louis
    c(b"MV", b"AS", 4.18, 73.51),     // Malé
    c(b"MW", b"AF", -13.96, 33.79),   // Lilongwe
    c(b"MX", b"NA", 19.43, -99.13),   // Mexico City
    c(b"MY", b"AS", 3.15, 101.69),    // Kuala Lumpur (not 3.14: clippy::approx_constant)
    c(b"MZ", b"AF", -25.97, 32.57),   // Maputo
    c(b"NA", b"AF", -22.56, 17.08),   // Windhoek
    c(b"NC", b"OC", -22.28, 166.46),  // Nouméa
    c(b"NE", b"AF", 13.51, 2.11),     // Niamey
    c(b"NF", b"OC", -29.05, 167.96),  // Kingston
    c(b"NG", b"AF", 9.08, 7.40),      // Abuja
    c(b"NI", b"NA", 12.11, -86.24),   // Managua
    c(b"NL", b"EU", 52.37, 4.90),     // Amsterdam
    c(b"NO", b"EU", 59.91, 10.75),    // Oslo
    c(b"NP", b"AS", 27.72, 85.32),    // Kathmandu
    c(b"NR", b"OC", -0.55, 166.92),   // Yaren
    c(b"NU", b"OC", -19.06, -169.92), // Alofi
    c(b"NZ", b"OC", -41.29, 174.78),  // Wellington
    c(b"OM", b"AS", 23.59, 58.41),    // Muscat
    c(b"PA", b"NA", 8.98, -79.52),    // Panama City
    c(b"PE", b"SA", -12.05, -77.04),  // Lima
    c(b"PF", b"OC", -17.54, -149.57), // Papeete
    c(b"PG", b"OC", -9.44, 147.18),   // Port Moresby
    c(b"PH", b"AS", 14.60, 120.98),   // Manila
    c(b"PK", b"AS", 33.68, 73.05),    // Islamabad
    c(b"PL", b"EU", 52.23, 21.01),    // Warsaw
    c(b"PM", b"NA", 46.78, -56.18),   // Saint-Pierre
    c(b"PN", b"OC", -25.07, -130.10), // Adamstown
    c(b"PR", b"NA", 18.47, -66.11),   // San Juan
    c(b"PS", b"AS", 31.90, 35.20),    // Ramallah
    c(b"PT", b"EU", 38.72, -9.14),    // Lisbon
    c(b"PW", b"OC", 7.50, 134.62),    // Ngerulmud
    c(b"PY", b"SA", -25.26, -57.58),  // Asunción
    c(b"QA", b"AS", 25.29, 51.53),    // Doha
    c(b"RE", b"AF", -20.88, 55.45),   // Saint-Denis
    c(b"RO", b"EU", 44.43, 26.10),    // Bucharest
    c(b"RS", b"EU", 44.79, 20.45),    // Belgrade
    c(b"RU", b"EU", 55.76, 37.62),    // Moscow
    c(b"RW", b"AF", -1.94, 30.06),    // Kigali
    c(b"SA", b"AS", 24.71, 46.68),    // Riyadh
    c(b"SB", b"OC", -9.43, 159.95),   // Honiara
    c(b"SC", b"AF", -4.62, 55.45),    // Victoria
    c(b"SD", b"AF", 15.50, 32.56),    // Khartoum
    c(b"SE", b"EU", 59.33, 18.07),    // Stockholm
    c(b"SG", b"AS", 1.29, 103.85),    // Singapore
    c(b"SH", b"AF", -15.93, -5.72),   // Jamestown
    c(b"SI", b"EU", 46.06, 14.51),    // Ljubljana
    c(b"SJ", b"EU", 78.22, 15.65),    // Longyearbyen
    c(b"SK", b"EU", 48.15, 17.11),    // Bratislava
    c(b"SL", b"AF", 8.48, -13.23),    // Freetown
    c(b"SM", b"EU", 43.94, 12.45),    // San Marino
    c(b"SN", b"AF", 14.72, -17.47),   // Dakar
    c(b"SO", b"AF", 2.05, 45.32),     // Mogadishu
    c(b"SR", b"SA", 5.85, -55.20),    // Paramaribo
    c(b"SS", b"AF", 4.85, 31.58),     // Juba
    c(b"ST", b"AF", 0.34, 6.73),      // São Tomé
    c(b"SV", b"NA", 13.69, -89.22),   // San Salvador
    c(b"SX", b"NA", 18.03, -63.05),   // Philipsburg
    c(b"SY", b"AS", 33.51, 36.28),    // Damascus
    c(b"SZ", b"AF", -26.31, 31.14),   // Mbabane
    c(b"TC", b"NA", 21.46, -71.14),   // Cockburn Town
    c(b"TD", b"AF", 12.13, 15.06),    // N'Djamena
    c(b"TF", b"AN", -49.35, 70.22),   // Port-aux-Français
    c(b"TG", b"AF", 6.13, 1.22),      // Lomé
    c(b"TH", b"AS", 13.76, 100.50),   // Bangkok
    c(b"TJ", b"AS", 38.56, 68.79),    // Dushanbe
    c(b"TK", b"OC", -9.20, -171.85),  // Fakaofo
    c(b"TL", b"OC", -8.56, 125.57),   // Dili
    c(b"TM", b"AS", 37.96, 58.33),    // Ashgabat
    c(b"TN", b"AF", 36.81, 10.18),    // Tunis
    c(b"TO", b"OC", -21.14, -175.20), // Nuku'alofa
    c(b"TR", b"AS", 39.93, 32.86),    // Ankara
    c(b"TT", b"NA", 10.65, -61.51),   // Port of Spain
    c(b"TV", b"OC", -8.52, 179.20),   // Funafuti
    c(b"TW", b"AS", 25.03, 121.57),   // Taipei
    c(b"TZ", b"AF", -6.16, 35.75),    // Dodoma
    c(b"UA", b"EU", 50.45, 30.52),    // Kyiv
    c(b"UG", b"AF", 0.35, 32.58),     // Kampala
    c(b"UM", b"OC", 19.28, 166.65),   // Wake Island
    c(b"US", b"NA", 38.90, -77.04),   // Washington, D.C.
    c(b"UY", b"SA", -34.90, -56.16),  // Montevideo
    c(b"UZ", b"AS", 41.30, 69.24),    // Tashkent
    c(b"VA", b"EU", 41.90, 12.45),    // Vatican City
    c(b"VC", b"NA", 13.16, -61.22),   // Kingstown
    c(b"VE", b"SA", 10.49, -66.88),   // Caracas
    c(b"VG", b"NA", 18.43, -64.62),   // Road Town
    c(b"VI", b"NA", 18.34, -64.93),   // Charlotte Amalie
    c(b"VN", b"AS", 21.03, 105.85),   // Hanoi
    c(b"VU", b"OC", -17.73, 168.32),  // Port Vila
    c(b"WF", b"OC", -13.28, -176.17), // Mata-Utu
    c(b"WS", b"OC", -13.83, -171.76), // Apia
    c(b"XK", b"EU", 42.66, 21.17),    // Pristina (user-assigned code, used by GeoIP vendors)
    c(b"YE", b"AS", 15.37, 44.19),    // Sanaa
    c(b"YT", b"AF", -12.78, 45.23),   // Mamoudzou
    c(b"ZA", b"AF", -25.75, 28.19),   // Pretoria
    c(b"ZM", b"AF", -15.39, 28.32),   // Lusaka
    c(b"ZW", b"AF", -17.83, 31.05),   // Harare
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique() {
        for pair in COUNTRIES.windows(2) {
            assert!(
                pair[0].code < pair[1].code,
                "{} must sort strictly before {}",
                pair[0].code_str(),
                pair[1].code_str()
            );
        }
    }

    #[test]
    fn table_is_complete() {
        assert!(COUNTRIES.len() >= 245, "only {} countries", COUNTRIES.len());
        // 249 officially assigned codes plus XK.
        assert_eq!(COUNTRIES.len(), 250);
    }

    #[test]
    fn every_entry_is_well_formed() {
        for c in COUNTRIES {
            assert!(c.code.iter().all(u8::is_ascii_uppercase), "{:?}", c.code);
            assert!(
                is_continent(c.continent_str()),
                "{}: {:?}",
                c.code_str(),
                c.continent
            );
            assert!(
                (-90.0..=90.0).contains(&c.lat),
                "{}: lat {}",
                c.code_str(),
                c.lat
            );
            assert!(
                (-180.0..=180.0).contains(&c.lon),
                "{}: lon {}",
                c.code_str(),
                c.lon
            );
            assert_eq!(country(c.code_str()), Some(c));
        }
    }

    #[test]
    fn every_continent_is_used() {
        for k in CONTINENTS {
            assert!(
                COUNTRIES.iter().any(|c| c.continent_str() == k),
                "{k} unused"
            );
        }
    }

    #[test]
    fn spot_checks() {
        let cont = |code: &str| country(code).map(|c| c.continent_str().to_owned());
        for (code, want) in [
            ("DE", "EU"),
            ("JP", "AS"),
            ("US", "NA"),
            ("BR", "SA"),
            ("AU", "OC"),
            ("ZA", "AF"),
            ("AQ", "AN"),
            ("RU", "EU"),
            ("TR", "AS"),
            ("EG", "AF"),
            ("MX", "NA"),
            ("PA", "NA"),
            ("GB", "EU"),
            ("IE", "EU"),
            ("SG", "AS"),
            ("NZ", "OC"),
        ] {
            assert_eq!(cont(code).as_deref(), Some(want), "{code}");
        }
        let de = country("DE").unwrap();
        assert_eq!(de.code, *b"DE");
        assert!((de.lat - 52.52).abs() < 0.5 && (de.lon - 13.40).abs() < 0.5);
        let au = country("AU").unwrap();
        assert!(au.lat < 0.0 && au.lon > 100.0, "Australia is south-east");
        let us = country("US").unwrap();
        assert!(us.lat > 0.0 && us.lon < 0.0, "the US is north-west");
    }

    #[test]
    fn lookup_is_case_insensitive() {
        assert_eq!(country("de"), country("DE"));
        assert_eq!(country("jP").unwrap().code, *b"JP");
        assert_eq!(country("Br").unwrap().continent, *b"SA");
    }

    #[test]
    fn unknown_or_malformed_codes_are_none() {
        for bad in [
            "", "D", "DEU", "ZZ", "UK", "AN", "CS", "1A", "é", "D ", " D", "ÀB",
        ] {
            assert_eq!(country(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn continents() {
        for k in ["AF", "AN", "AS", "EU", "NA", "OC", "SA"] {
            assert!(is_continent(k), "{k}");
        }
        for bad in ["", "eu", "Eu", "EUR", "AM", "AU", "XX", "E"] {
            assert!(!is_continent(bad), "{bad:?}");
        }
        assert!(CONTINENTS.windows(2).all(|w| w[0] < w[1]));
    }
}
