//! The deterministic world generator (`--customers N --seed S`).
//!
//! One MSP, `N` customer tenants with NCE subscriptions, and what Dicker Data, ConnectWise,
//! Autotask and Xero hold about them, all dated relative to `today`. The same
//! `(customers, seed, today)` gives a byte-identical world on every machine: the only source
//! of randomness is the SplitMix64 [`Rng`], and every collection is built in a fixed order
//! (vectors and `BTreeMap`s, never `HashMap` iteration).
//!
//! The world is first built as a small model (customers → product lines → subscriptions),
//! then mismatches are planted into the model and recorded in `World::planted`, and only then
//! is every system's view written out from the model. Lines not planted are exactly
//! consistent across all systems, so a correct reconciliation finds exactly the planted set.
//! The linking conventions the systems follow (names, domains, stock codes) are documented in
//! docs/dataset.md; the reconciliation code must follow that document, not this file.

// Dataset structs are always built with `..Default::default()`, even when every field is
// named today: other parts of the sim add fields to them (with serde defaults) over time.
#![allow(clippy::needless_update)]

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, Months, NaiveDate, NaiveTime, Utc};
use rust_decimal::Decimal;

use super::util::Rng;
use super::world::{
    AtCompany, AtContract, AtContractService, AtContractServiceUnit, AtService, Autotask,
    ConnectWise, CustomerTenant, CwAddition, CwAgreement, CwCatalogItem, CwCompany, DdSubscription,
    DickerData, Domain, Meta, MsSubscription, MspTenant, Planted, SeatAddition, User, World, Xero,
    XeroAccount, XeroContact, XeroInvoice, XeroLineItem, XeroOrg,
};

/// Options of a generated world.
#[derive(Debug, Clone)]
pub struct GenOptions {
    pub customers: usize,
    pub seed: u64,
    pub today: chrono::NaiveDate,
}

impl GenOptions {
    pub fn new(customers: usize, seed: u64, today: NaiveDate) -> Self {
        GenOptions {
            customers,
            seed,
            today,
        }
    }
}

/// The planted statuses (`Planted::status`), in the terms of the reconciliation.
pub mod status {
    /// Dicker Data's confirmed quantity differs from Microsoft's quantity.
    pub const DISTRIBUTOR_MICROSOFT_MISMATCH: &str = "distributor_microsoft_mismatch";
    /// The PSA charges fewer seats than Dicker Data bills.
    pub const PSA_UNDERBILLED: &str = "psa_underbilled";
    /// The PSA charges more seats than Dicker Data bills.
    pub const PSA_OVERBILLED: &str = "psa_overbilled";
    /// Fewer licences of the SKU are assigned than purchased.
    pub const UNASSIGNED_SEATS: &str = "unassigned_seats";
    /// More licences of the SKU are assigned than purchased.
    pub const OVER_ASSIGNED: &str = "over_assigned";
    /// A Microsoft subscription has no Dicker Data line.
    pub const MISSING_AT_DISTRIBUTOR: &str = "missing_at_distributor";
    /// A Dicker Data line bills a Microsoft subscription that is suspended, deleted or absent.
    pub const BILLED_NOT_AT_MICROSOFT: &str = "billed_not_at_microsoft";
    /// The customer's PSA company / Xero contact matches neither by name nor by domain.
    pub const UNMAPPED_CUSTOMER: &str = "unmapped_customer";
    /// The PSA bills the line under a product without the Dicker Data stock code.
    pub const UNMAPPED_PRODUCT: &str = "unmapped_product";

    /// Every status, in the order the generator's fixed schedule plants them.
    pub const ALL: [&str; 9] = [
        UNMAPPED_CUSTOMER,
        DISTRIBUTOR_MICROSOFT_MISMATCH,
        PSA_UNDERBILLED,
        PSA_OVERBILLED,
        UNASSIGNED_SEATS,
        OVER_ASSIGNED,
        MISSING_AT_DISTRIBUTOR,
        BILLED_NOT_AT_MICROSOFT,
        UNMAPPED_PRODUCT,
    ];
}

/// The PSA names used in `Planted::psa`.
pub const PSAS: [&str; 3] = ["connectwise", "autotask", "xero"];
const PSA_LABELS: [&str; 3] = ["ConnectWise", "Autotask", "Xero"];
const CW: usize = 0;
const AT: usize = 1;
const XERO: usize = 2;

/// The date the shipped demo asset (assets/demo-world.json) was generated for.
pub const DEMO_TODAY: (i32, u32, u32) = (2026, 11, 21);
/// Customers and seed of the default/demo world.
pub const DEMO_CUSTOMERS: usize = 12;
pub const DEMO_SEED: u64 = 42;

/// The demo world: `DEMO_CUSTOMERS` customers, `DEMO_SEED`, for `today`.
pub fn demo(today: NaiveDate) -> World {
    generate(&GenOptions::new(DEMO_CUSTOMERS, DEMO_SEED, today))
}

// ---------------------------------------------------------------------------------------------
// The NCE catalogue. Graph sku GUIDs and part numbers are the public ones; product, sku and
// availability ids are illustrative NCE-shaped ids; prices are illustrative AUD ex GST per seat
// per month for an annual term.

struct Product {
    /// Stem of the ConnectWise catalog identifier (`M365BP` → `M365BP-P1Y`).
    code: &'static str,
    name: &'static str,
    /// How Dicker Data names it in stock descriptions.
    dd_name: &'static str,
    product_id: &'static str,
    sku_id: &'static str,
    availability: &'static str,
    graph_sku: &'static str,
    part_number: &'static str,
    /// Recommended retail price, cents per seat per month, annual term.
    rrp_cents: i64,
    /// Offered on a 3-year term.
    p3y: bool,
}

const BASIC: usize = 0;
const STANDARD: usize = 1;
const PREMIUM: usize = 2;
const APPS_BUSINESS: usize = 3;
const APPS_ENTERPRISE: usize = 4;
const EXO1: usize = 5;
const EXO2: usize = 6;
const O365_E1: usize = 7;
const O365_E3: usize = 8;
const M365_E3: usize = 9;
const M365_E5: usize = 10;
const TEAMS_ESSENTIALS: usize = 11;
const DEFENDER_BUSINESS: usize = 12;
const ENTRA_P1: usize = 13;
const VISIO: usize = 14;
const PROJECT: usize = 15;
const POWER_BI: usize = 16;
const ARCHIVING: usize = 17;
const DEFENDER_O365: usize = 18;

const CATALOGUE: [Product; 19] = [
    Product {
        code: "M365BB",
        name: "Microsoft 365 Business Basic",
        dd_name: "M365 BUSINESS BASIC",
        product_id: "CFQ7TTC0LH18",
        sku_id: "0001",
        availability: "CFQ7TTC0LGZT",
        graph_sku: "3b555118-da6a-4418-894f-7df1e2096870",
        part_number: "O365_BUSINESS_ESSENTIALS",
        rrp_cents: 900,
        p3y: false,
    },
    Product {
        code: "M365BS",
        name: "Microsoft 365 Business Standard",
        dd_name: "M365 BUSINESS STANDARD",
        product_id: "CFQ7TTC0LDPB",
        sku_id: "0001",
        availability: "CFQ7TTC0LDQ0",
        graph_sku: "f245ecc8-75af-4f8e-b61f-27d8114de5f3",
        part_number: "O365_BUSINESS_PREMIUM",
        rrp_cents: 1870,
        p3y: false,
    },
    Product {
        code: "M365BP",
        name: "Microsoft 365 Business Premium",
        dd_name: "M365 BUSINESS PREMIUM",
        product_id: "CFQ7TTC0LCHC",
        sku_id: "0002",
        availability: "CFQ7TTC0K5DJ",
        graph_sku: "cbdc14ab-d96c-4c30-b9f4-6ada7cdc1d46",
        part_number: "SPB",
        rrp_cents: 3290,
        p3y: true,
    },
    Product {
        code: "M365AB",
        name: "Microsoft 365 Apps for business",
        dd_name: "M365 APPS FOR BUSINESS",
        product_id: "CFQ7TTC0LH1G",
        sku_id: "0002",
        availability: "CFQ7TTC0LH2B",
        graph_sku: "cdd28e44-67e3-425e-be4c-737fab2899d3",
        part_number: "O365_BUSINESS",
        rrp_cents: 1490,
        p3y: false,
    },
    Product {
        code: "M365AE",
        name: "Microsoft 365 Apps for enterprise",
        dd_name: "M365 APPS FOR ENTERPRISE",
        product_id: "CFQ7TTC0LH1K",
        sku_id: "0001",
        availability: "CFQ7TTC0LH2D",
        graph_sku: "c2273bd0-dff7-4215-9ef5-2c7bcfb06425",
        part_number: "OFFICESUBSCRIPTION",
        rrp_cents: 1840,
        p3y: false,
    },
    Product {
        code: "EXOP1",
        name: "Exchange Online (Plan 1)",
        dd_name: "EXCHANGE ONLINE PLAN 1",
        product_id: "CFQ7TTC0LH16",
        sku_id: "0001",
        availability: "CFQ7TTC0LH2F",
        graph_sku: "4b9405b0-7788-4568-add1-99614e613b69",
        part_number: "EXCHANGESTANDARD",
        rrp_cents: 600,
        p3y: false,
    },
    Product {
        code: "EXOP2",
        name: "Exchange Online (Plan 2)",
        dd_name: "EXCHANGE ONLINE PLAN 2",
        product_id: "CFQ7TTC0LH0R",
        sku_id: "0001",
        availability: "CFQ7TTC0LH2H",
        graph_sku: "19ec0d23-8335-4cbd-94ac-6050e30712fa",
        part_number: "EXCHANGEENTERPRISE",
        rrp_cents: 1200,
        p3y: false,
    },
    Product {
        code: "O365E1",
        name: "Office 365 E1",
        dd_name: "OFFICE 365 E1",
        product_id: "CFQ7TTC0LF8Q",
        sku_id: "0001",
        availability: "CFQ7TTC0LF91",
        graph_sku: "18181a46-0d4e-45cd-891e-60aabd171b4e",
        part_number: "STANDARDPACK",
        rrp_cents: 1520,
        p3y: true,
    },
    Product {
        code: "O365E3",
        name: "Office 365 E3",
        dd_name: "OFFICE 365 E3",
        product_id: "CFQ7TTC0LF8R",
        sku_id: "0001",
        availability: "CFQ7TTC0LF92",
        graph_sku: "6fd2c87f-b296-42f0-b197-1e91e994b900",
        part_number: "ENTERPRISEPACK",
        rrp_cents: 3690,
        p3y: true,
    },
    Product {
        code: "M365E3",
        name: "Microsoft 365 E3",
        dd_name: "M365 E3",
        product_id: "CFQ7TTC0LFLX",
        sku_id: "0002",
        availability: "CFQ7TTC0LFK7",
        graph_sku: "05e9a617-0261-4cee-bb44-138d3ef5d965",
        part_number: "SPE_E3",
        rrp_cents: 5560,
        p3y: true,
    },
    Product {
        code: "M365E5",
        name: "Microsoft 365 E5",
        dd_name: "M365 E5",
        product_id: "CFQ7TTC0LFLZ",
        sku_id: "0002",
        availability: "CFQ7TTC0LFK9",
        graph_sku: "06ebc4ee-1bb5-47dd-8120-11324bc54e06",
        part_number: "SPE_E5",
        rrp_cents: 8870,
        p3y: true,
    },
    Product {
        code: "TEAMSESS",
        name: "Microsoft Teams Essentials",
        dd_name: "TEAMS ESSENTIALS",
        product_id: "CFQ7TTC0QW7C",
        sku_id: "0001",
        availability: "CFQ7TTC0QW8B",
        graph_sku: "3ab6abff-666f-4424-bfb7-f0bc274ec7bc",
        part_number: "TEAMS_ESSENTIALS_AAD",
        rrp_cents: 600,
        p3y: false,
    },
    Product {
        code: "MDB",
        name: "Microsoft Defender for Business",
        dd_name: "DEFENDER FOR BUSINESS",
        product_id: "CFQ7TTC0TN6N",
        sku_id: "0001",
        availability: "CFQ7TTC0TN7M",
        graph_sku: "5e1e7702-a2b7-4360-8d07-2f515792896f",
        part_number: "MDE_SMB",
        rrp_cents: 450,
        p3y: false,
    },
    Product {
        code: "ENTRAP1",
        name: "Microsoft Entra ID P1",
        dd_name: "ENTRA ID P1",
        product_id: "CFQ7TTC0LH1P",
        sku_id: "0001",
        availability: "CFQ7TTC0LH2K",
        graph_sku: "078d2b04-f1bd-4111-bbd4-b4b1b354cef4",
        part_number: "AAD_PREMIUM",
        rrp_cents: 900,
        p3y: false,
    },
    Product {
        code: "VISIOP2",
        name: "Visio Plan 2",
        dd_name: "VISIO PLAN 2",
        product_id: "CFQ7TTC0HD33",
        sku_id: "0002",
        availability: "CFQ7TTC0HD4F",
        graph_sku: "c5928f49-12ba-48f7-ada3-0d743a3601d5",
        part_number: "VISIOCLIENT",
        rrp_cents: 2250,
        p3y: false,
    },
    Product {
        code: "PROJP3",
        name: "Project Plan 3",
        dd_name: "PROJECT PLAN 3",
        product_id: "CFQ7TTC0HDN1",
        sku_id: "0002",
        availability: "CFQ7TTC0HDP3",
        graph_sku: "53818b1b-4a27-454b-8896-0dba576410e6",
        part_number: "PROJECTPROFESSIONAL",
        rrp_cents: 4500,
        p3y: false,
    },
    Product {
        code: "PBIPRO",
        name: "Power BI Pro",
        dd_name: "POWER BI PRO",
        product_id: "CFQ7TTC0L3PB",
        sku_id: "0001",
        availability: "CFQ7TTC0L3QC",
        graph_sku: "f8a1db68-be16-40ed-86d5-cb42ce701560",
        part_number: "POWER_BI_PRO",
        rrp_cents: 2150,
        p3y: false,
    },
    Product {
        code: "EOA",
        name: "Exchange Online Archiving for Exchange Online",
        dd_name: "EXCHANGE ONLINE ARCHIVING",
        product_id: "CFQ7TTC0LH0K",
        sku_id: "0001",
        availability: "CFQ7TTC0LH2M",
        graph_sku: "ee02fd1b-340e-4a4b-b355-4a514e4c8943",
        part_number: "EXCHANGEARCHIVE_ADDON",
        rrp_cents: 450,
        p3y: false,
    },
    Product {
        code: "MDO365P1",
        name: "Microsoft Defender for Office 365 (Plan 1)",
        dd_name: "DEFENDER FOR OFFICE 365 P1",
        product_id: "CFQ7TTC0LH0Z",
        sku_id: "0001",
        availability: "CFQ7TTC0LH2P",
        graph_sku: "4ef96642-f096-40de-a3e9-d83fb2f90211",
        part_number: "ATP_ENTERPRISE",
        rrp_cents: 300,
        p3y: false,
    },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Term {
    P1M,
    P1Y,
    P3Y,
}

impl Term {
    fn code(self) -> &'static str {
        match self {
            Term::P1M => "P1M",
            Term::P1Y => "P1Y",
            Term::P3Y => "P3Y",
        }
    }

    fn months(self) -> u32 {
        match self {
            Term::P1M => 1,
            Term::P1Y => 12,
            Term::P3Y => 36,
        }
    }

    fn words(self) -> &'static str {
        match self {
            Term::P1M => "1 month",
            Term::P1Y => "1 year",
            Term::P3Y => "3 years",
        }
    }

    fn dd_words(self) -> &'static str {
        match self {
            Term::P1M => "1 MTH",
            Term::P1Y => "1 YR",
            Term::P3Y => "3 YR",
        }
    }
}

/// Billing plan: the last field of the Dicker Data stock code (§4.3: `1` monthly billing,
/// `Y` annual upfront).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Plan {
    Monthly,
    Annual,
}

impl Plan {
    fn code(self) -> &'static str {
        match self {
            Plan::Monthly => "1",
            Plan::Annual => "Y",
        }
    }

    /// Partner Center `billingCycle` (§3.3).
    fn cycle(self) -> &'static str {
        match self {
            Plan::Monthly => "monthly",
            Plan::Annual => "annual",
        }
    }

    /// Dicker Data `BillingFrequency` (§4.3, [UNCONFIRMED] text).
    fn dd_frequency(self) -> &'static str {
        match self {
            Plan::Monthly => "Monthly",
            Plan::Annual => "Annual",
        }
    }
}

/// Sell price (RRP) in cents per seat per month: monthly terms cost 20% more.
fn price_cents(p: &Product, term: Term) -> i64 {
    match term {
        Term::P1M => (p.rrp_cents * 120 + 50) / 100,
        Term::P1Y | Term::P3Y => p.rrp_cents,
    }
}

/// Dicker Data's buy price in cents per seat per month (about 12% under RRP).
fn cost_cents(p: &Product, term: Term) -> i64 {
    (price_cents(p, term) * 88 + 50) / 100
}

fn money(cents: i64) -> Decimal {
    Decimal::new(cents, 2)
}

fn stock_code(p: &Product, term: Term, plan: Plan) -> String {
    format!(
        "{}:{}:{}:{}:",
        term.code(),
        p.product_id,
        p.sku_id,
        plan.code()
    )
}

fn product_key(p: &Product) -> String {
    format!("{}:{}", p.product_id, p.sku_id)
}

// ---------------------------------------------------------------------------------------------
// Names.

const MSP_NAMES: [&str; 12] = [
    "Southern Cross IT",
    "Harbour City Technology",
    "Tasman Managed Services",
    "Blue Mountains Networks",
    "Coral Coast IT Solutions",
    "Red Centre Computing",
    "Great Dividing Systems",
    "Bass Strait Technology",
    "Sunshine Coast Cloud",
    "Murray River Managed IT",
    "Flinders Technology Partners",
    "Golden Wattle IT",
];

const FIRST_WORDS: [&str; 112] = [
    "Harbourside",
    "Atlas",
    "Kookaburra",
    "Southern",
    "Bluegum",
    "Coastal",
    "Pinnacle",
    "Redgum",
    "Wattle",
    "Ironbark",
    "Tasman",
    "Kauri",
    "Banksia",
    "Summit",
    "Meridian",
    "Outback",
    "Coral",
    "Brindabella",
    "Murray",
    "Darling",
    "Yarra",
    "Swan",
    "Hunter",
    "Barossa",
    "Riverina",
    "Gippsland",
    "Illawarra",
    "Mornington",
    "Cradle",
    "Waratah",
    "Jacaranda",
    "Magpie",
    "Wombat",
    "Platypus",
    "Emu",
    "Cassowary",
    "Dingo",
    "Koala",
    "Echidna",
    "Bilby",
    "Galah",
    "Lorikeet",
    "Pelican",
    "Albatross",
    "Kiwi",
    "Tui",
    "Kea",
    "Rimu",
    "Totara",
    "Matai",
    "Pohutukawa",
    "Manuka",
    "Kowhai",
    "Taranaki",
    "Waikato",
    "Otago",
    "Canterbury",
    "Marlborough",
    "Nelson",
    "Northshore",
    "Eastside",
    "Westgate",
    "Highfield",
    "Greenfield",
    "Silverwater",
    "Stonebridge",
    "Bridgewater",
    "Clearwater",
    "Sandstone",
    "Granite",
    "Copperhead",
    "Goldfields",
    "Boulder",
    "Ridgeline",
    "Horizon",
    "Sunrise",
    "Evergreen",
    "Oakridge",
    "Beacon",
    "Anchor",
    "Compass",
    "Keystone",
    "Cornerstone",
    "Lighthouse",
    "Northern",
    "Capricorn",
    "Sapphire",
    "Opal",
    "Jarrah",
    "Karri",
    "Mallee",
    "Saltbush",
    "Spinifex",
    "Bottlebrush",
    "Paperbark",
    "Kingfisher",
    "Currawong",
    "Brolga",
    "Wedgetail",
    "Bellbird",
    "O'Brien",
    "O'Connor",
    "McKenzie's",
    "Fitzgerald's",
    "Nguyen",
    "Patel",
    "Kowalski",
    "Rossi",
    "Papadopoulos",
    "Tran",
    "Singh",
    "Henderson",
];

const INDUSTRY_WORDS: [&str; 84] = [
    "Dental",
    "Outsourcing",
    "Logistics",
    "Legal",
    "Accounting",
    "Plumbing",
    "Electrical",
    "Veterinary",
    "Physiotherapy",
    "Architects",
    "Engineering",
    "Builders",
    "Freight",
    "Realty",
    "Medical",
    "Consulting",
    "Financial",
    "Joinery",
    "Landscaping",
    "Motors",
    "Pharmacy",
    "Optometry",
    "Chiropractic",
    "Surveying",
    "Roofing",
    "Glass",
    "Printing",
    "Signage",
    "Catering",
    "Bakery",
    "Brewing",
    "Wines",
    "Orchards",
    "Dairy",
    "Transport",
    "Couriers",
    "Civil",
    "Drafting",
    "Recruitment",
    "Insurance",
    "Mortgages",
    "Advisory",
    "Wealth",
    "Travel",
    "Events",
    "Media",
    "Marketing",
    "Design",
    "Interiors",
    "Cabinets",
    "Flooring",
    "Plastering",
    "Concreting",
    "Fencing",
    "Pools",
    "Solar",
    "Air Conditioning",
    "Security",
    "Cleaning",
    "Childcare",
    "Aged Care",
    "Education",
    "Tutoring",
    "Fitness",
    "Podiatry",
    "Psychology",
    "Conveyancing",
    "Property",
    "Strata",
    "Storage",
    "Packaging",
    "Manufacturing",
    "Hydraulics",
    "Irrigation",
    "Agriculture",
    "Machinery",
    "Equipment Hire",
    "Timber",
    "Steel",
    "Fabrication",
    "Automotive",
    "Audiology",
    "Radiology",
    "Pathology",
];

const THIRD_WORDS: [&str; 10] = [
    "Group",
    "Partners",
    "Services",
    "Co",
    "Holdings",
    "Solutions",
    "Associates",
    "Collective",
    "Studio",
    "Specialists",
];

/// Trading-name prefixes for unmapped customers (never used in legal names).
const TRADING_WORDS: [&str; 16] = [
    "Bright", "Smart", "True", "Pure", "Prime", "Elite", "Total", "Express", "Local", "City",
    "Metro", "Urban", "Family", "Premier", "Quality", "Reliable",
];

pub(crate) const GIVEN_NAMES: [&str; 64] = [
    "Olivia",
    "Jack",
    "Charlotte",
    "William",
    "Amelia",
    "Noah",
    "Isla",
    "Oliver",
    "Mia",
    "Thomas",
    "Ava",
    "James",
    "Grace",
    "Lucas",
    "Chloe",
    "Henry",
    "Zoe",
    "Liam",
    "Ruby",
    "Ethan",
    "Sophie",
    "Leo",
    "Harper",
    "Mason",
    "Ella",
    "Hamish",
    "Matilda",
    "Lachlan",
    "Priya",
    "Arjun",
    "Mei",
    "Wei",
    "Aroha",
    "Tane",
    "Ngaio",
    "Rangi",
    "Fatima",
    "Omar",
    "Sofia",
    "Luca",
    "Ana",
    "Mateo",
    "Hannah",
    "Daniel",
    "Emily",
    "Samuel",
    "Jessica",
    "Benjamin",
    "Sarah",
    "Joshua",
    "Emma",
    "Ryan",
    "Laura",
    "Nathan",
    "Rebecca",
    "Adam",
    "Kate",
    "Michael",
    "Anh",
    "Minh",
    "Deepa",
    "Rohan",
    "Tahlia",
    "Cooper",
];

pub(crate) const SURNAMES: [&str; 64] = [
    "Smith",
    "Jones",
    "Williams",
    "Brown",
    "Wilson",
    "Taylor",
    "Johnson",
    "White",
    "Martin",
    "Anderson",
    "Thompson",
    "Nguyen",
    "Thomas",
    "Walker",
    "Harris",
    "Lee",
    "Ryan",
    "Robinson",
    "Kelly",
    "King",
    "Davis",
    "Wright",
    "Evans",
    "Roberts",
    "Green",
    "Hall",
    "Wood",
    "Jackson",
    "Clarke",
    "Patel",
    "Khan",
    "Singh",
    "Chen",
    "Wang",
    "Li",
    "Zhang",
    "Tran",
    "Le",
    "Pham",
    "Murphy",
    "OBrien",
    "Walsh",
    "McDonald",
    "Campbell",
    "Stewart",
    "Mitchell",
    "Young",
    "Scott",
    "Edwards",
    "Turner",
    "Hughes",
    "Ngata",
    "Parata",
    "Tipene",
    "Rossi",
    "Russo",
    "Kowalski",
    "Novak",
    "Papadopoulos",
    "Costa",
    "Silva",
    "Fernandes",
    "Sharma",
    "Gupta",
];

const STAFF_TITLES: [&str; 10] = [
    "Account Manager",
    "Project Coordinator",
    "Technical Account Manager",
    "Accounts Officer",
    "Sales Executive",
    "Field Technician",
    "Network Engineer",
    "Office Manager",
    "Help Desk Analyst",
    "Procurement Officer",
];

const AGENT_TITLES: [&str; 4] = [
    "Service Desk Engineer",
    "Systems Engineer",
    "Cloud Engineer",
    "Senior Systems Engineer",
];

const GUEST_DOMAINS: [&str; 4] = [
    "bluewrenconsulting.com.au",
    "lyrebirdaudit.com.au",
    "kestrelsecurity.co.nz",
    "quokkacontractors.com.au",
];

const PROSPECTS: [&str; 3] = [
    "Saltwater Creative Studio",
    "Thornbury Community Legal Centre",
    "Yellowbox Cafe Collective",
];

const UNRELATED_CONTACTS: [(&str, bool); 6] = [
    ("Telstra Corporation Limited", true),
    ("Officeworks", true),
    ("Australian Taxation Office", true),
    ("Amazon Web Services Australia Pty Ltd", true),
    ("Canva Pty Ltd", true),
    ("Harvey Norman Commercial", true),
];

/// The linking convention for names (docs/dataset.md "Linking"): lowercase, every character
/// that is not a letter or digit becomes a space, the words `pty`, `ltd` and `limited` are
/// dropped, and the remaining words are joined without spaces.
fn normalise_name(name: &str) -> String {
    let spaced: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                ' '
            }
        })
        .collect();
    spaced
        .split_whitespace()
        .filter(|w| !matches!(*w, "pty" | "ltd" | "limited"))
        .collect()
}

fn alnum(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_alphanumeric()).collect()
}

// ---------------------------------------------------------------------------------------------
// Date helpers (all infallible for the dates the generator makes; fall back to the input).

fn add_months(d: NaiveDate, m: u32) -> NaiveDate {
    d.checked_add_months(Months::new(m)).unwrap_or(d)
}

fn sub_months(d: NaiveDate, m: u32) -> NaiveDate {
    d.checked_sub_months(Months::new(m)).unwrap_or(d)
}

fn add_days(d: NaiveDate, n: i64) -> NaiveDate {
    d.checked_add_signed(chrono::TimeDelta::days(n))
        .unwrap_or(d)
}

fn at(d: NaiveDate, h: u32, m: u32, s: u32) -> DateTime<Utc> {
    d.and_time(NaiveTime::from_hms_opt(h, m, s).unwrap_or(NaiveTime::MIN))
        .and_utc()
}

fn midnight(d: NaiveDate) -> DateTime<Utc> {
    at(d, 0, 0, 0)
}

fn random_time(rng: &mut Rng, d: NaiveDate) -> DateTime<Utc> {
    at(
        d,
        rng.range(0, 23) as u32,
        rng.range(0, 59) as u32,
        rng.range(0, 59) as u32,
    )
}

/// A random moment `lo..=hi` days before `today`.
fn days_ago_time(rng: &mut Rng, today: NaiveDate, lo: u64, hi: u64) -> DateTime<Utc> {
    let days = rng.range(lo, hi) as i64;
    random_time(rng, add_days(today, -days))
}

fn first_of_month(d: NaiveDate) -> NaiveDate {
    d.with_day(1).unwrap_or(d)
}

/// The latest `start + k*months` (k ≥ 0) that is on or before `today` (or `start` itself).
fn latest_anniversary(start: NaiveDate, months: u32, today: NaiveDate) -> NaiveDate {
    let mut k = 0u32;
    let mut current = start;
    loop {
        let next = add_months(start, (k + 1) * months);
        if next > today || next == current {
            return current;
        }
        k += 1;
        current = next;
    }
}

/// A seed for an independent stream.
fn mix(seed: u64, salt: u64) -> u64 {
    Rng::new(seed ^ salt.wrapping_mul(0xD1B5_4A32_D192_ED03)).next_u64()
}

/// Fisher–Yates with the world's Rng.
fn shuffle<T>(rng: &mut Rng, v: &mut [T]) {
    for i in (1..v.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
}

/// `n` random characters from `alphabet`.
fn random_string(rng: &mut Rng, n: usize, alphabet: &[u8]) -> String {
    (0..n).map(|_| char::from(*rng.pick(alphabet))).collect()
}

const UPPER_ALNUM: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
const MIXED_ALNUM: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";

fn phone(rng: &mut Rng, country: &str) -> String {
    if country == "NZ" {
        format!("09 {} {:04}", rng.range(300, 999), rng.range(0, 9999))
    } else {
        let area = *rng.pick(&[2u8, 3, 7, 8]);
        format!(
            "0{area} {:04} {:04}",
            rng.range(5000, 9999),
            rng.range(0, 9999)
        )
    }
}

// ---------------------------------------------------------------------------------------------
// MSP staff.

/// `n` staff users of the MSP tenant: the first is the setup admin (GlobalAdmin + AdminAgent,
/// MFA, on the custom `domain`); then, shuffled among ordinary members, a `.onmicrosoft.com`
/// admin on `initial_domain`, a few AdminAgents (one without MFA), a few disabled accounts (one
/// still an AdminAgent) and guests (`…#EXT#@initial_domain`, userType `Guest`). Cheap enough
/// for 50,000 users; ids and UPNs are unique.
pub fn staff_users(rng: &mut Rng, n: usize, domain: &str, initial_domain: &str) -> Vec<User> {
    #[derive(Clone, Copy, PartialEq)]
    enum Kind {
        Member,
        OnMicrosoft,
        Agent,
        AgentNoMfa,
        Guest,
        Disabled,
        DisabledAgent,
    }
    if n == 0 {
        return Vec::new();
    }
    let agents = if n >= 4 { 3 + n / 100 } else { 0 };
    let guests = if n >= 6 { 2 + n / 1000 } else { 0 };
    let disabled = if n >= 8 { 2 + n / 25 } else { 0 };
    let mut kinds: Vec<Kind> = Vec::with_capacity(n);
    if n >= 2 {
        kinds.push(Kind::OnMicrosoft);
    }
    for i in 0..agents {
        kinds.push(if i == 1 {
            Kind::AgentNoMfa
        } else {
            Kind::Agent
        });
    }
    for _ in 0..guests {
        kinds.push(Kind::Guest);
    }
    for i in 0..disabled {
        kinds.push(if i == 0 {
            Kind::DisabledAgent
        } else {
            Kind::Disabled
        });
    }
    kinds.truncate(n - 1);
    while kinds.len() < n - 1 {
        kinds.push(Kind::Member);
    }
    shuffle(rng, &mut kinds);

    let spb = CATALOGUE[PREMIUM].graph_sku.to_string();
    let mut taken: BTreeMap<String, u32> = BTreeMap::new();
    let mut unique_local = |base: String| -> String {
        let count = taken.entry(base.clone()).or_insert(0);
        *count += 1;
        if *count == 1 {
            base
        } else {
            format!("{base}{count}")
        }
    };
    let mut users = Vec::with_capacity(n);

    // The setup admin.
    let given = *rng.pick(&GIVEN_NAMES);
    let surname = *rng.pick(&SURNAMES);
    let local = unique_local(format!("{}.{}", given, surname).to_lowercase());
    users.push(User {
        id: rng.guid(),
        display_name: format!("{given} {surname}"),
        given_name: Some(given.into()),
        surname: Some(surname.into()),
        user_principal_name: format!("{local}@{domain}"),
        mail: Some(format!("{local}@{domain}")),
        job_title: Some("Technical Director".into()),
        account_enabled: true,
        user_type: "Member".into(),
        assigned_licenses: vec![spb.clone()],
        partner_roles: vec!["GlobalAdmin".into(), "AdminAgent".into()],
        mfa: true,
        ..Default::default()
    });

    for kind in kinds {
        let given = *rng.pick(&GIVEN_NAMES);
        let surname = *rng.pick(&SURNAMES);
        let base = format!("{}.{}", given, surname).to_lowercase();
        let user = match kind {
            Kind::OnMicrosoft => {
                let local = unique_local("admin".into());
                User {
                    id: rng.guid(),
                    display_name: "Partner Administrator".into(),
                    user_principal_name: format!("{local}@{initial_domain}"),
                    job_title: Some("Shared admin account".into()),
                    account_enabled: true,
                    user_type: "Member".into(),
                    partner_roles: vec!["GlobalAdmin".into(), "AdminAgent".into()],
                    mfa: true,
                    ..Default::default()
                }
            }
            Kind::Guest => {
                let ext = *rng.pick(&GUEST_DOMAINS);
                let local = unique_local(format!("{base}_{ext}#EXT#"));
                User {
                    id: rng.guid(),
                    display_name: format!("{given} {surname} (Guest)"),
                    given_name: Some(given.into()),
                    surname: Some(surname.into()),
                    user_principal_name: format!("{local}@{initial_domain}"),
                    mail: Some(format!("{base}@{ext}")),
                    account_enabled: true,
                    user_type: "Guest".into(),
                    mfa: rng.below(2) == 0,
                    ..Default::default()
                }
            }
            _ => {
                let local = unique_local(base);
                let agent = matches!(kind, Kind::Agent | Kind::AgentNoMfa | Kind::DisabledAgent);
                let enabled = !matches!(kind, Kind::Disabled | Kind::DisabledAgent);
                let title = if agent {
                    *rng.pick(&AGENT_TITLES)
                } else {
                    *rng.pick(&STAFF_TITLES)
                };
                User {
                    id: rng.guid(),
                    display_name: format!("{given} {surname}"),
                    given_name: Some(given.into()),
                    surname: Some(surname.into()),
                    user_principal_name: format!("{local}@{domain}"),
                    mail: Some(format!("{local}@{domain}")),
                    job_title: Some(title.into()),
                    account_enabled: enabled,
                    user_type: "Member".into(),
                    assigned_licenses: if enabled {
                        vec![spb.clone()]
                    } else {
                        Vec::new()
                    },
                    partner_roles: if agent {
                        vec!["AdminAgent".into()]
                    } else {
                        Vec::new()
                    },
                    mfa: match kind {
                        Kind::Agent | Kind::DisabledAgent => true,
                        Kind::AgentNoMfa => false,
                        _ => rng.below(100) < 85,
                    },
                    ..Default::default()
                }
            }
        };
        users.push(user);
    }
    users
}

// ---------------------------------------------------------------------------------------------
// The model.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MsState {
    Active,
    Suspended,
    Deleted,
    /// Not in Partner Center at all (a Dicker Data line pointing nowhere).
    Absent,
}

#[derive(Debug, Clone)]
struct SubM {
    id: String,
    directory_id: String,
    order_id: String,
    /// Microsoft's quantity (initial purchase + seat additions).
    quantity: u32,
    /// Dicker Data's confirmed quantity; `None` = no Dicker Data line.
    dd_qty: Option<u32>,
    ms: MsState,
    created: DateTime<Utc>,
    term_start: NaiveDate,
    term_end: NaiveDate,
    additions: Vec<SeatAddition>,
    auto_renew: bool,
}

impl SubM {
    /// Seats that were not yet there at the end of `day` (purchase or later additions).
    fn seats_after(&self, day: NaiveDate) -> u32 {
        let added: u32 = self.additions.iter().map(|a| a.quantity).sum();
        let initial = self.quantity.saturating_sub(added);
        let mut n = 0;
        if self.created.date_naive() > day {
            n += initial;
        }
        for a in &self.additions {
            if a.added.is_some_and(|t| t.date_naive() > day) {
                n += a.quantity;
            }
        }
        n
    }
}

#[derive(Debug, Clone)]
struct LineM {
    product: usize,
    term: Term,
    plan: Plan,
    subs: Vec<SubM>,
    /// Planted PSA quantity per PSA (CW, AT, Xero); `None` = the Dicker Data total.
    psa_qty: [Option<u32>; 3],
    /// The PSA bills this line under a product without identifiers.
    unmapped_product: [bool; 3],
    planted: bool,
}

impl LineM {
    fn p(&self) -> &'static Product {
        &CATALOGUE[self.product]
    }

    fn dd_total(&self) -> u32 {
        self.subs.iter().filter_map(|s| s.dd_qty).sum()
    }

    /// Whether the PSAs carry the line (they follow Dicker Data).
    fn billed(&self) -> bool {
        self.dd_total() > 0
    }

    fn psa(&self, psa: usize) -> u32 {
        self.psa_qty[psa].unwrap_or_else(|| self.dd_total())
    }

    fn stock_code(&self) -> String {
        stock_code(self.p(), self.term, self.plan)
    }

    fn start(&self) -> NaiveDate {
        self.subs
            .iter()
            .map(|s| s.created.date_naive())
            .min()
            .unwrap_or_default()
    }

    /// What PSA `psa` billed at the end of `day`, going back from the current quantity.
    fn psa_at(&self, psa: usize, day: NaiveDate) -> u32 {
        let later: u32 = self.subs.iter().map(|s| s.seats_after(day)).sum();
        self.psa(psa).saturating_sub(later)
    }
}

#[derive(Debug, Clone)]
struct Trading {
    name: String,
    domain: String,
}

#[derive(Debug, Clone)]
struct CustM {
    tenant_id: String,
    commerce_id: String,
    /// The name without legal suffix, e.g. `Atlas Outsourcing`.
    core: String,
    /// The legal name, e.g. `Atlas Outsourcing Pty Ltd`.
    name: String,
    country: &'static str,
    initial_domain: String,
    custom_domains: Vec<String>,
    users: u32,
    gdap_active: bool,
    delegated: bool,
    lines: Vec<LineM>,
    /// Planted difference of assigned vs purchased per product (= Graph sku).
    assigned_delta: BTreeMap<usize, i64>,
    /// Set when the PSAs know the customer only under a trading name.
    unmapped: Option<Trading>,
}

impl CustM {
    fn subs_of_product(&self, product: usize) -> usize {
        self.lines
            .iter()
            .filter(|l| l.product == product)
            .map(|l| l.subs.len())
            .sum()
    }
}

/// Names already taken (normalised), so every customer is unique by the linking convention.
#[derive(Default)]
struct NameBook {
    keys: BTreeSet<String>,
}

impl NameBook {
    fn company(&mut self, rng: &mut Rng) -> (String, String) {
        for attempt in 0..64 {
            let first = *rng.pick(&FIRST_WORDS);
            let second = *rng.pick(&INDUSTRY_WORDS);
            let mut core = format!("{first} {second}");
            if attempt >= 24 || rng.below(10) == 0 {
                core = format!("{core} {}", rng.pick(&THIRD_WORDS));
            }
            let key = normalise_name(&core);
            if !self.keys.contains(&key) {
                self.keys.insert(key.clone());
                return (core, key);
            }
        }
        // The word lists ran out (very large worlds): number the name.
        let first = *rng.pick(&FIRST_WORDS);
        let second = *rng.pick(&INDUSTRY_WORDS);
        let mut n = self.keys.len();
        loop {
            let core = format!("{first} {second} {n}");
            let key = normalise_name(&core);
            if self.keys.insert(key.clone()) {
                return (core, key);
            }
            n += 1;
        }
    }
}

fn make_sub(rng: &mut Rng, today: NaiveDate, quantity: u32, term: Term, recent: bool) -> SubM {
    let days_ago = if recent || rng.below(100) < 7 {
        rng.range(0, 6)
    } else {
        match term {
            Term::P3Y => rng.range(7, 1000),
            _ => rng.range(7, 1460),
        }
    } as i64;
    let created_day = add_days(today, -days_ago);
    let created = random_time(rng, created_day);
    let term_start = latest_anniversary(created_day, term.months(), today);
    let term_end = add_days(add_months(term_start, term.months()), -1);
    let mut additions = Vec::new();
    if quantity >= 3 && rng.below(100) < 25 {
        let count = if quantity >= 6 { rng.range(1, 2) } else { 1 };
        let mut left = quantity - 1; // at least one seat was bought at creation
        let mut dates: Vec<i64> = (0..count)
            .map(|_| {
                if rng.below(100) < 35 {
                    rng.range(0, days_ago.min(6) as u64) as i64
                } else {
                    rng.range(0, days_ago as u64) as i64
                }
            })
            .collect();
        dates.sort_unstable_by(|a, b| b.cmp(a));
        for d in dates {
            if left == 0 {
                break;
            }
            let q = rng.range(1, u64::from(left.min(5))) as u32;
            left -= q;
            additions.push(SeatAddition {
                quantity: q,
                added: Some(random_time(rng, add_days(today, -d))),
                ..Default::default()
            });
        }
        // Additions the same day as the purchase happen after it.
        for a in &mut additions {
            if a.added.is_some_and(|t| t < created) {
                a.added = Some(created + chrono::TimeDelta::hours(1));
            }
        }
    }
    SubM {
        id: rng.guid(),
        directory_id: rng.guid(),
        order_id: rng.guid(),
        quantity,
        dd_qty: Some(quantity),
        ms: MsState::Active,
        created,
        term_start,
        term_end,
        additions,
        auto_renew: rng.below(100) < 90,
    }
}

fn suite_terms(rng: &mut Rng, product: usize) -> (Term, Plan) {
    let r = rng.below(100);
    if r < 25 {
        (Term::P1M, Plan::Monthly)
    } else if r < 80 {
        (Term::P1Y, Plan::Monthly)
    } else if r < 95 || !CATALOGUE[product].p3y {
        (Term::P1Y, Plan::Annual)
    } else {
        (Term::P3Y, Plan::Annual)
    }
}

fn addon_terms(rng: &mut Rng) -> (Term, Plan) {
    let r = rng.below(100);
    if r < 50 {
        (Term::P1M, Plan::Monthly)
    } else if r < 90 {
        (Term::P1Y, Plan::Monthly)
    } else {
        (Term::P1Y, Plan::Annual)
    }
}

fn new_line(product: usize, term: Term, plan: Plan, subs: Vec<SubM>) -> LineM {
    LineM {
        product,
        term,
        plan,
        subs,
        psa_qty: [None; 3],
        unmapped_product: [false; 3],
        planted: false,
    }
}

fn build_customer(rng: &mut Rng, today: NaiveDate, book: &mut NameBook) -> CustM {
    let (core, slug) = book.company(rng);
    let nz = rng.below(100) < 15;
    let country = if nz { "NZ" } else { "AU" };
    let suffix = if nz {
        *rng.pick(&[" Limited", " Limited", " Limited", " Ltd", ""])
    } else {
        *rng.pick(&[" Pty Ltd", " Pty Ltd", " Pty Ltd", " Pty Limited", ""])
    };
    let name = format!("{core}{suffix}");
    let primary = if nz {
        format!("{slug}.co.nz")
    } else {
        match rng.below(20) {
            0 => format!("{slug}.au"),
            1 | 2 => format!("{slug}.com"),
            _ => format!("{slug}.com.au"),
        }
    };
    let mut custom_domains = vec![primary.clone()];
    if rng.below(10) == 0 {
        custom_domains.push(if primary.ends_with(".com.au") {
            format!("{slug}.au")
        } else {
            format!("{slug}.net")
        });
    }
    let users = match rng.below(100) {
        0..=59 => rng.range(1, 25),
        60..=89 => rng.range(26, 100),
        _ => rng.range(101, 300),
    } as u32;

    let mut c = CustM {
        tenant_id: rng.guid(),
        commerce_id: rng.guid(),
        core,
        name,
        country,
        initial_domain: format!("{slug}.onmicrosoft.com"),
        custom_domains,
        users,
        gdap_active: rng.below(100) >= 8,
        delegated: rng.below(100) < 60,
        lines: Vec::new(),
        assigned_delta: BTreeMap::new(),
        unmapped: None,
    };

    // The main suite.
    let suite = match rng.below(100) {
        0..=34 => PREMIUM,
        35..=59 => STANDARD,
        60..=74 => BASIC,
        75..=82 => M365_E3,
        83..=87 => O365_E3,
        88..=91 => EXO1,
        92..=95 => APPS_BUSINESS,
        _ => M365_E5,
    };
    let unlicensed = if users >= 10 {
        rng.range(0, u64::from(users / 10)) as u32
    } else {
        0
    };
    let mut suite_qty = (users - unlicensed).max(1);
    // Field staff on Business Basic beside a richer suite.
    let mut basic_qty = 0;
    if matches!(suite, PREMIUM | STANDARD) && users >= 6 && rng.below(100) < 18 {
        basic_qty = rng
            .range(u64::from(suite_qty / 4), u64::from(suite_qty / 2))
            .max(1) as u32;
        suite_qty -= basic_qty;
    }
    let (term, plan) = suite_terms(rng, suite);
    let shape = rng.below(100);
    if suite_qty >= 4 && shape < 12 {
        // The same SKU on two terms: an annual base plus monthly flex seats.
        let flex = rng.range(1, u64::from((suite_qty - 1).min(3))) as u32;
        let plan = if rng.below(4) == 0 {
            Plan::Annual
        } else {
            Plan::Monthly
        };
        let annual = make_sub(rng, today, suite_qty - flex, Term::P1Y, false);
        c.lines.push(new_line(suite, Term::P1Y, plan, vec![annual]));
        let monthly = make_sub(rng, today, flex, Term::P1M, false);
        c.lines
            .push(new_line(suite, Term::P1M, Plan::Monthly, vec![monthly]));
    } else if suite_qty >= 4 && shape < 20 {
        // Two subscriptions of one product and term (bought at different times).
        let second = rng.range(1, u64::from(suite_qty / 2)) as u32;
        let a = make_sub(rng, today, suite_qty - second, term, false);
        let b = make_sub(rng, today, second, term, false);
        c.lines.push(new_line(suite, term, plan, vec![a, b]));
    } else {
        let s = make_sub(rng, today, suite_qty, term, false);
        c.lines.push(new_line(suite, term, plan, vec![s]));
    }
    if basic_qty > 0 {
        let (term, plan) = suite_terms(rng, BASIC);
        let s = make_sub(rng, today, basic_qty, term, false);
        c.lines.push(new_line(BASIC, term, plan, vec![s]));
    }

    // Add-ons.
    let few = |rng: &mut Rng, max: u32| rng.range(1, u64::from(max.clamp(1, users.max(1)))) as u32;
    let mut addons: Vec<(usize, u32)> = Vec::new();
    if rng.below(100) < 20 {
        addons.push((EXO1, few(rng, 5)));
    }
    if rng.below(100) < 8 {
        addons.push((EXO2, few(rng, 3)));
    }
    if rng.below(100) < 5 {
        addons.push((TEAMS_ESSENTIALS, few(rng, 10)));
    }
    if !matches!(suite, PREMIUM | M365_E3 | M365_E5) && rng.below(100) < 12 {
        addons.push((DEFENDER_BUSINESS, suite_qty));
    }
    if !matches!(suite, PREMIUM | M365_E3 | M365_E5) && rng.below(100) < 10 {
        addons.push((ENTRA_P1, few(rng, suite_qty)));
    }
    if matches!(suite, BASIC | STANDARD | O365_E3) && rng.below(100) < 8 {
        addons.push((DEFENDER_O365, suite_qty));
    }
    if rng.below(100) < 15 {
        addons.push((VISIO, few(rng, 3)));
    }
    if rng.below(100) < 10 {
        addons.push((PROJECT, few(rng, 3)));
    }
    if rng.below(100) < 12 {
        addons.push((POWER_BI, few(rng, 5)));
    }
    if rng.below(100) < 8 {
        addons.push((ARCHIVING, few(rng, 10)));
    }
    if suite == BASIC && rng.below(100) < 15 {
        addons.push((APPS_BUSINESS, few(rng, suite_qty)));
    }
    if suite == M365_E5 && rng.below(100) < 30 {
        addons.push((O365_E1, few(rng, 20)));
    }
    if suite == O365_E3 && rng.below(100) < 20 {
        addons.push((APPS_ENTERPRISE, few(rng, 5)));
    }
    for (product, qty) in addons {
        let subs: usize = c.lines.iter().map(|l| l.subs.len()).sum();
        if subs >= 10 {
            break;
        }
        let (term, plan) = addon_terms(rng);
        if c.lines.iter().any(|l| l.product == product) {
            continue;
        }
        let recent = rng.below(100) < 4;
        let s = make_sub(rng, today, qty, term, recent);
        c.lines.push(new_line(product, term, plan, vec![s]));
    }
    c
}

// ---------------------------------------------------------------------------------------------
// Planting.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    UnmappedCustomer,
    DistMs,
    Under,
    Over,
    Unassigned,
    OverAssigned,
    MissingDd,
    BilledNotMs,
    UnmappedProduct,
}

const FIXED_SCHEDULE: [Kind; 9] = [
    Kind::UnmappedCustomer,
    Kind::DistMs,
    Kind::Under,
    Kind::Over,
    Kind::Unassigned,
    Kind::OverAssigned,
    Kind::MissingDd,
    Kind::BilledNotMs,
    Kind::UnmappedProduct,
];

/// Line-level kinds and their weights in the random phase.
const RANDOM_WEIGHTS: [(Kind, u64); 8] = [
    (Kind::DistMs, 3),
    (Kind::Under, 3),
    (Kind::Over, 2),
    (Kind::Unassigned, 3),
    (Kind::OverAssigned, 1),
    (Kind::MissingDd, 1),
    (Kind::BilledNotMs, 1),
    (Kind::UnmappedProduct, 1),
];

fn is_psa_kind(k: Kind) -> bool {
    matches!(k, Kind::Under | Kind::Over | Kind::UnmappedProduct)
}

fn customer_eligible(c: &CustM) -> bool {
    c.unmapped.is_none()
        && c.lines.iter().any(|l| l.billed())
        && !c.lines.iter().any(|l| {
            l.planted
                && (l.psa_qty.iter().any(Option::is_some) || l.unmapped_product.contains(&true))
        })
}

fn line_eligible(c: &CustM, li: usize, k: Kind) -> bool {
    let l = &c.lines[li];
    if l.planted || (is_psa_kind(k) && c.unmapped.is_some()) {
        return false;
    }
    let single = l.subs.len() == 1;
    let qty: u32 = l.subs.iter().map(|s| s.quantity).sum();
    match k {
        Kind::UnmappedCustomer => false,
        Kind::DistMs => !l.subs.is_empty(),
        Kind::Under => l.dd_total() >= 2,
        Kind::Over | Kind::UnmappedProduct => l.dd_total() >= 1,
        Kind::Unassigned => {
            single && c.gdap_active && qty >= 2 && c.subs_of_product(l.product) == 1
        }
        Kind::OverAssigned => single && c.gdap_active && c.subs_of_product(l.product) == 1,
        Kind::MissingDd | Kind::BilledNotMs => single,
    }
}

fn psa_scope_text(scope: Option<usize>) -> String {
    match scope {
        Some(p) => PSA_LABELS[p].to_string(),
        None => "ConnectWise, Autotask and Xero".to_string(),
    }
}

struct Planter<'a> {
    rng: Rng,
    taken_keys: &'a BTreeSet<String>,
    trading_keys: BTreeSet<String>,
    rows: Vec<(usize, Planted)>,
}

impl Planter<'_> {
    fn row(
        &mut self,
        ci: usize,
        c: &CustM,
        status: &str,
        line: Option<&LineM>,
        psa: Option<usize>,
        detail: String,
    ) {
        self.rows.push((
            ci,
            Planted {
                status: status.into(),
                customer_tenant_id: c.tenant_id.clone(),
                product_id: line.map(|l| product_key(l.p())).unwrap_or_default(),
                term: line.map(|l| l.term.code().to_string()).unwrap_or_default(),
                psa: psa.map(|p| PSAS[p].to_string()),
                detail,
                ..Default::default()
            },
        ));
    }

    fn unmap_customer(&mut self, ci: usize, c: &mut CustM) {
        let industry = c
            .core
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .join(" ");
        let industry = if industry.is_empty() {
            "Services".to_string()
        } else {
            industry
        };
        let mut tries = 0;
        let trading = loop {
            let prefix = *self.rng.pick(&TRADING_WORDS);
            let name = if tries < 16 {
                format!("{prefix} {industry}")
            } else {
                format!("{prefix} {industry} {tries}")
            };
            let key = normalise_name(&name);
            if !self.taken_keys.contains(&key) && !self.trading_keys.contains(&key) {
                self.trading_keys.insert(key.clone());
                break Trading {
                    name,
                    domain: format!("{key}.net.au"),
                };
            }
            tries += 1;
        };
        let detail = format!(
            "the PSAs know {} as \"{}\" (website {}), which matches it neither by name nor by domain",
            c.name, trading.name, trading.domain
        );
        c.unmapped = Some(trading);
        self.row(ci, c, status::UNMAPPED_CUSTOMER, None, None, detail);
    }

    fn apply(&mut self, ci: usize, c: &mut CustM, li: usize, k: Kind, fixed: bool) {
        if k == Kind::UnmappedCustomer {
            self.unmap_customer(ci, c);
            return;
        }
        let rng = &mut self.rng;
        let (status, psa, detail) = {
            let l = &mut c.lines[li];
            l.planted = true;
            match k {
                Kind::DistMs => {
                    let si = rng.below(l.subs.len() as u64) as usize;
                    let s = &mut l.subs[si];
                    let q = s.quantity;
                    let up = q == 1 || rng.below(2) == 0;
                    let dd = if up {
                        q + rng.range(1, 5) as u32
                    } else {
                        q - rng.range(1, u64::from((q - 1).min(5))) as u32
                    };
                    s.dd_qty = Some(dd);
                    let detail = format!(
                        "Dicker Data confirms {dd} seats on subscription {}; Microsoft has {q}",
                        s.id
                    );
                    (status::DISTRIBUTOR_MICROSOFT_MISMATCH, None, detail)
                }
                Kind::Under | Kind::Over => {
                    let dd = l.dd_total();
                    let (qty, st) = if k == Kind::Under {
                        let k = rng.range(1, u64::from((dd - 1).min(5))) as u32;
                        (dd - k, status::PSA_UNDERBILLED)
                    } else {
                        (dd + rng.range(1, 5) as u32, status::PSA_OVERBILLED)
                    };
                    let scope = if fixed || rng.below(100) < 70 {
                        None
                    } else {
                        Some(rng.below(3) as usize)
                    };
                    for p in 0..3 {
                        if scope.is_none_or(|s| s == p) {
                            l.psa_qty[p] = Some(qty);
                        }
                    }
                    let detail = format!(
                        "{} bill {qty} seats; Dicker Data bills {dd}",
                        psa_scope_text(scope)
                    );
                    (st, scope, detail)
                }
                Kind::Unassigned | Kind::OverAssigned => {
                    let q = l.subs.iter().map(|s| s.quantity).sum::<u32>();
                    let (delta, st) = if k == Kind::Unassigned {
                        (
                            -(rng.range(1, u64::from((q - 1).min(5))) as i64),
                            status::UNASSIGNED_SEATS,
                        )
                    } else {
                        (rng.range(1, 3) as i64, status::OVER_ASSIGNED)
                    };
                    c.assigned_delta.insert(l.product, delta);
                    let assigned = i64::from(q) + delta;
                    let detail = format!(
                        "{assigned} {} licences assigned; {q} purchased",
                        l.p().part_number
                    );
                    (st, None, detail)
                }
                Kind::MissingDd => {
                    let s = &mut l.subs[0];
                    s.dd_qty = None;
                    let detail = format!(
                        "Microsoft subscription {} ({} seats) has no Dicker Data line",
                        s.id, s.quantity
                    );
                    (status::MISSING_AT_DISTRIBUTOR, None, detail)
                }
                Kind::BilledNotMs => {
                    let s = &mut l.subs[0];
                    let (state, what) = match rng.below(3) {
                        0 => (MsState::Suspended, "is suspended at Microsoft"),
                        1 => (MsState::Deleted, "is deleted at Microsoft"),
                        _ => (MsState::Absent, "does not exist at Microsoft"),
                    };
                    s.ms = state;
                    let detail = format!(
                        "Dicker Data bills {} seats on subscription {}, which {what}",
                        s.dd_qty.unwrap_or(0),
                        s.id
                    );
                    (status::BILLED_NOT_AT_MICROSOFT, None, detail)
                }
                Kind::UnmappedProduct => {
                    let scope = if fixed || rng.below(100) < 70 {
                        None
                    } else {
                        Some(rng.below(3) as usize)
                    };
                    for p in 0..3 {
                        if scope.is_none_or(|s| s == p) {
                            l.unmapped_product[p] = true;
                        }
                    }
                    let detail = format!(
                        "{} bill these {} seats under a product without the stock code {}",
                        psa_scope_text(scope),
                        l.dd_total(),
                        l.stock_code()
                    );
                    (status::UNMAPPED_PRODUCT, scope, detail)
                }
                Kind::UnmappedCustomer => return,
            }
        };
        let line = c.lines[li].clone();
        self.row(ci, c, status, Some(&line), psa, detail);
    }
}

fn plant(rng: Rng, custs: &mut [CustM], keys: &BTreeSet<String>) -> Vec<Planted> {
    let mut pl = Planter {
        rng,
        taken_keys: keys,
        trading_keys: BTreeSet::new(),
        rows: Vec::new(),
    };
    // 1. The fixed schedule: every kind once, wherever it fits.
    for kind in FIXED_SCHEDULE {
        if kind == Kind::UnmappedCustomer {
            let candidates: Vec<usize> = (0..custs.len())
                .filter(|&ci| customer_eligible(&custs[ci]))
                .collect();
            if candidates.is_empty() {
                continue;
            }
            let ci = *pl.rng.pick(&candidates);
            pl.unmap_customer(ci, &mut custs[ci]);
            continue;
        }
        let candidates: Vec<(usize, usize)> = custs
            .iter()
            .enumerate()
            .flat_map(|(ci, c)| (0..c.lines.len()).map(move |li| (ci, li)))
            .filter(|&(ci, li)| line_eligible(&custs[ci], li, kind))
            .collect();
        if candidates.is_empty() {
            continue;
        }
        let (ci, li) = *pl.rng.pick(&candidates);
        pl.apply(ci, &mut custs[ci], li, kind, true);
    }

    // 2. Random: about 15% of lines in all.
    let total_lines: usize = custs.iter().map(|c| c.lines.len()).sum();
    let target = (total_lines * 15 + 50) / 100;
    for (ci, c) in custs.iter_mut().enumerate() {
        if pl.rng.below(60) == 0 && customer_eligible(c) {
            pl.unmap_customer(ci, c);
        }
    }
    let mut order: Vec<(usize, usize)> = custs
        .iter()
        .enumerate()
        .flat_map(|(ci, c)| (0..c.lines.len()).map(move |li| (ci, li)))
        .collect();
    shuffle(&mut pl.rng, &mut order);
    for (ci, li) in order {
        if pl.rows.len() >= target {
            break;
        }
        let kinds: Vec<(Kind, u64)> = RANDOM_WEIGHTS
            .iter()
            .copied()
            .filter(|&(k, _)| line_eligible(&custs[ci], li, k))
            .collect();
        let total: u64 = kinds.iter().map(|&(_, w)| w).sum();
        if total == 0 {
            continue;
        }
        let mut r = pl.rng.below(total);
        let mut chosen = kinds[0].0;
        for (k, w) in kinds {
            if r < w {
                chosen = k;
                break;
            }
            r -= w;
        }
        pl.apply(ci, &mut custs[ci], li, chosen, false);
    }
    let mut rows = pl.rows;
    rows.sort_by(|(a, ra), (b, rb)| {
        (a, &ra.product_id, &ra.term, &ra.status).cmp(&(b, &rb.product_id, &rb.term, &rb.status))
    });
    rows.into_iter().map(|(_, r)| r).collect()
}

// ---------------------------------------------------------------------------------------------
// Writing each system's view.

struct MspInfo {
    name: String,
    slug: String,
    domain: String,
}

/// How each PSA names a customer: harmless variants of the legal name that normalise equal,
/// or (when `by_domain` and the PSA record has the customer's domain) a name that matches
/// only by domain.
fn psa_name(rng: &mut Rng, c: &CustM, keys: &BTreeSet<String>, by_domain: bool) -> String {
    if let Some(t) = &c.unmapped {
        return match rng.below(3) {
            0 => t.name.to_uppercase(),
            _ => t.name.clone(),
        };
    }
    let core = &c.core;
    let nz = c.country == "NZ";
    match rng.below(20) {
        0..=5 => c.name.clone(),
        6..=8 => c.name.to_uppercase(),
        9 | 10 => {
            if nz {
                format!("{core} Ltd.")
            } else {
                format!("{core} Pty. Ltd.")
            }
        }
        11 | 12 => core.clone(),
        13 | 14 => {
            if nz {
                format!("{core} Limited")
            } else {
                format!("{core}, Pty Limited")
            }
        }
        15 | 16 => {
            if nz {
                format!("{} LIMITED", core.to_uppercase())
            } else {
                format!("{} PTY LTD", core.to_uppercase())
            }
        }
        17 | 18 => core.replace('\'', ""),
        _ => {
            // A name that matches only by the domain the PSA record carries.
            let group = format!("{core} Group");
            if !by_domain || keys.contains(&normalise_name(&group)) {
                c.name.clone()
            } else {
                group
            }
        }
    }
}

/// A PSA's website / webAddress for a customer: one of its custom domains, written as people
/// write them (with or without `www.`, a scheme, a trailing slash), or none.
fn psa_website(rng: &mut Rng, c: &CustM) -> Option<String> {
    let domain = match &c.unmapped {
        Some(t) => t.domain.clone(),
        None => {
            if c.custom_domains.len() > 1 && rng.below(3) == 0 {
                c.custom_domains[1].clone()
            } else {
                c.custom_domains[0].clone()
            }
        }
    };
    match rng.below(10) {
        0..=3 => Some(domain),
        4 | 5 => Some(format!("www.{domain}")),
        6 | 7 => Some(format!("https://www.{domain}")),
        8 => Some(format!("http://{domain}/")),
        _ => None,
    }
}

fn cw_identifier(name: &str, taken: &mut BTreeSet<String>) -> String {
    let base: String = name
        .split(|ch: char| !ch.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .filter(|w| !matches!(w.to_ascii_lowercase().as_str(), "pty" | "ltd" | "limited"))
        .map(|w| {
            let mut cs = w.chars();
            match cs.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + &cs.as_str().to_ascii_lowercase(),
                None => String::new(),
            }
        })
        .collect();
    let base: String = base.chars().take(22).collect();
    let mut id = base.clone();
    let mut n = 2;
    while !taken.insert(id.clone()) {
        id = format!("{base}{n}");
        n += 1;
    }
    id
}

fn catalog_identifier(p: &Product, term: Term, plan: Plan) -> String {
    match plan {
        Plan::Monthly => format!("{}-{}", p.code, term.code()),
        Plan::Annual => format!("{}-{}-ANNUAL", p.code, term.code()),
    }
}

fn item_description(p: &Product, term: Term, plan: Plan) -> String {
    let billing = match plan {
        Plan::Monthly => "billed monthly",
        Plan::Annual => "billed annually",
    };
    format!("{} (NCE, {}, {billing})", p.name, term.words())
}

fn dd_description(p: &Product, term: Term, plan: Plan) -> String {
    match plan {
        Plan::Monthly => format!("MS NCE {} {} COMMIT", p.dd_name, term.dd_words()),
        Plan::Annual => format!(
            "MS NCE {} {} COMMIT ANNUAL UPFRONT",
            p.dd_name,
            term.dd_words()
        ),
    }
}

/// Every (product, term, plan) some line is billed under, in a fixed order.
fn used_items(custs: &[CustM]) -> BTreeSet<(usize, Term, Plan)> {
    custs
        .iter()
        .flat_map(|c| c.lines.iter())
        .filter(|l| l.billed())
        .map(|l| (l.product, l.term, l.plan))
        .collect()
}

fn unmapped_products(custs: &[CustM], psa: usize) -> BTreeSet<usize> {
    custs
        .iter()
        .flat_map(|c| c.lines.iter())
        .filter(|l| l.billed() && l.unmapped_product[psa])
        .map(|l| l.product)
        .collect()
}

fn emit_microsoft(custs: &[CustM]) -> Vec<CustomerTenant> {
    custs
        .iter()
        .map(|c| {
            let mut subscriptions = Vec::new();
            let mut assigned: BTreeMap<String, u32> = BTreeMap::new();
            let mut listed: BTreeSet<usize> = BTreeSet::new();
            let mut active: BTreeMap<usize, u32> = BTreeMap::new();
            for l in &c.lines {
                let p = l.p();
                for s in &l.subs {
                    let status = match s.ms {
                        MsState::Active => "active",
                        MsState::Suspended => "suspended",
                        MsState::Deleted => "deleted",
                        MsState::Absent => continue,
                    };
                    if matches!(s.ms, MsState::Active | MsState::Suspended) {
                        listed.insert(l.product);
                    }
                    if s.ms == MsState::Active {
                        *active.entry(l.product).or_insert(0) += s.quantity;
                    }
                    subscriptions.push(MsSubscription {
                        id: s.id.clone(),
                        directory_id: s.directory_id.clone(),
                        offer_id: format!("{}:{}:{}", p.product_id, p.sku_id, p.availability),
                        offer_name: p.name.into(),
                        friendly_name: p.name.into(),
                        product_id: p.product_id.into(),
                        sku_id: p.sku_id.into(),
                        graph_sku_id: p.graph_sku.into(),
                        sku_part_number: p.part_number.into(),
                        quantity: s.quantity,
                        status: status.into(),
                        billing_cycle: l.plan.cycle().into(),
                        term_duration: l.term.code().into(),
                        creation_date: Some(s.created),
                        effective_start_date: Some(midnight(s.term_start)),
                        commitment_end_date: Some(midnight(s.term_end)),
                        auto_renew_enabled: s.auto_renew,
                        is_trial: false,
                        order_id: s.order_id.clone(),
                        seat_additions: s.additions.clone(),
                        ..Default::default()
                    });
                }
            }
            for product in listed {
                let purchased = i64::from(active.get(&product).copied().unwrap_or(0));
                let delta = c.assigned_delta.get(&product).copied().unwrap_or(0);
                let n = (purchased + delta).max(0);
                assigned.insert(
                    CATALOGUE[product].graph_sku.into(),
                    u32::try_from(n).unwrap_or(0),
                );
            }
            CustomerTenant {
                tenant_id: c.tenant_id.clone(),
                commerce_id: c.commerce_id.clone(),
                company_name: c.name.clone(),
                domain: c.initial_domain.clone(),
                custom_domains: c.custom_domains.clone(),
                relationship_to_partner: "reseller".into(),
                allow_delegated_access: c.delegated,
                gdap_active: c.gdap_active,
                country: c.country.into(),
                user_count: c.users,
                assigned,
                subscriptions,
                ..Default::default()
            }
        })
        .collect()
}

fn emit_dicker(rng: &mut Rng, custs: &[CustM], today: NaiveDate) -> DickerData {
    let mut refs: BTreeSet<String> = BTreeSet::new();
    let mut subscriptions = Vec::new();
    for c in custs {
        for l in &c.lines {
            let p = l.p();
            for s in &l.subs {
                let Some(q) = s.dd_qty else { continue };
                let reference = loop {
                    let r = format!("{:08X}", rng.next_u64() as u32);
                    if refs.insert(r.clone()) {
                        break r;
                    }
                };
                let (last, next) = match l.plan {
                    Plan::Monthly => {
                        let last = latest_anniversary(s.term_start, 1, today);
                        (last, add_months(last, 1))
                    }
                    Plan::Annual => {
                        let last = latest_anniversary(s.term_start, 12, today);
                        (last, add_months(last, 12))
                    }
                };
                subscriptions.push(DdSubscription {
                    tenant_id: c.tenant_id.clone(),
                    subscription_reference: reference,
                    company_name: c.name.to_uppercase(),
                    tenant_description: c.initial_domain.clone(),
                    stock_code: l.stock_code(),
                    stock_description: dd_description(p, l.term, l.plan),
                    manufacturer_stock_code: product_key(p),
                    subscription_id: s.id.clone(),
                    parent_subscription_id: None,
                    status: "ACTIVE".into(),
                    billing_frequency: l.plan.dd_frequency().into(),
                    confirmed_quantity: q,
                    last_billing_date: Some(last),
                    next_billing_date: Some(next),
                    expiry_date: Some(s.term_end),
                    unit_cost: money(cost_cents(p, l.term)),
                    ..Default::default()
                });
            }
        }
    }
    DickerData {
        account_code: format!("{}", rng.range(300_000, 399_999)),
        access_code: rng.guid().to_uppercase(),
        access_key_lifetime_secs: 600,
        subscriptions,
        ..Default::default()
    }
}

fn emit_connectwise(
    rng: &mut Rng,
    custs: &[CustM],
    keys: &BTreeSet<String>,
    msp: &MspInfo,
    today: NaiveDate,
) -> ConnectWise {
    let mut cw = ConnectWise {
        company_id: msp.slug.clone(),
        public_key: random_string(rng, 16, MIXED_ALNUM),
        private_key: random_string(rng, 16, MIXED_ALNUM),
        client_ids: vec![rng.guid()],
        ..Default::default()
    };

    // The catalog: one item per stock code in use, plus legacy items without identifiers.
    let mut item_ids: BTreeMap<(usize, Term, Plan), u64> = BTreeMap::new();
    let mut next_item = 700u64;
    for (product, term, plan) in used_items(custs) {
        let p = &CATALOGUE[product];
        next_item += rng.range(1, 4);
        item_ids.insert((product, term, plan), next_item);
        cw.catalog.push(CwCatalogItem {
            id: next_item,
            identifier: catalog_identifier(p, term, plan),
            description: item_description(p, term, plan),
            customer_description: format!("{} - {} commitment", p.name, term.words()),
            price: money(price_cents(p, term)),
            cost: money(cost_cents(p, term)),
            inactive_flag: false,
            product_class: if product % 3 == 0 {
                "NonInventory".into()
            } else {
                "Agreement".into()
            },
            manufacturer_part_number: Some(product_key(p)),
            vendor_sku: Some(stock_code(p, term, plan)),
            recurring_flag: true,
            ..Default::default()
        });
    }
    let mut legacy_ids: BTreeMap<usize, u64> = BTreeMap::new();
    for product in unmapped_products(custs, CW) {
        let p = &CATALOGUE[product];
        next_item += rng.range(1, 4);
        legacy_ids.insert(product, next_item);
        cw.catalog.push(CwCatalogItem {
            id: next_item,
            identifier: format!("LEGACY-{}", p.code),
            description: format!("{} licences (legacy item)", p.name),
            customer_description: format!("{} licence", p.name),
            price: money(price_cents(p, Term::P1Y)),
            cost: money(cost_cents(p, Term::P1Y)),
            inactive_flag: false,
            product_class: "NonInventory".into(),
            manufacturer_part_number: None,
            vendor_sku: None,
            recurring_flag: true,
            ..Default::default()
        });
    }

    let mut identifiers = BTreeSet::new();
    let mut company_id = 18u64;
    let mut agreement_id = 60u64;
    let mut addition_id = 9000u64;
    for c in custs {
        let website = psa_website(rng, c);
        let name = psa_name(rng, c, keys, website.is_some());
        company_id += rng.range(1, 6);
        cw.companies.push(CwCompany {
            id: company_id,
            identifier: cw_identifier(&name, &mut identifiers),
            name: name.clone(),
            status: "Active".into(),
            types: vec!["Client".into()],
            website,
            phone_number: Some(phone(rng, c.country)),
            deleted_flag: false,
            ..Default::default()
        });
        agreement_id += rng.range(1, 3);
        let start = first_of_month(c.lines.iter().map(LineM::start).min().unwrap_or(today));
        cw.agreements.push(CwAgreement {
            id: agreement_id,
            name: "Microsoft CSP".into(),
            type_name: "Microsoft CSP".into(),
            company_id,
            agreement_status: "Active".into(),
            start_date: Some(start),
            end_date: None,
            no_ending_date_flag: true,
            cancelled_flag: false,
            billing_cycle: "Monthly".into(),
            prorate_flag: rng.below(2) == 0,
            ..Default::default()
        });
        for l in c.lines.iter().filter(|l| l.billed()) {
            let p = l.p();
            let product_id = if l.unmapped_product[CW] {
                legacy_ids.get(&l.product).copied().unwrap_or_default()
            } else {
                item_ids
                    .get(&(l.product, l.term, l.plan))
                    .copied()
                    .unwrap_or_default()
            };
            addition_id += rng.range(1, 5);
            let effective = l.start();
            cw.additions.push(CwAddition {
                id: addition_id,
                agreement_id,
                product_id,
                quantity: Decimal::from(l.psa(CW)),
                less_included: Decimal::ZERO,
                unit_price: money(price_cents(p, l.term)),
                unit_cost: money(cost_cents(p, l.term)),
                bill_customer: "Billable".into(),
                effective_date: Some(effective),
                cancelled_date: None,
                description: if l.unmapped_product[CW] {
                    format!("{} licences", p.name)
                } else {
                    item_description(p, l.term, l.plan)
                },
                invoice_description: None,
                taxable_flag: true,
                last_updated: Some(days_ago_time(rng, today, 0, 30)),
                ..Default::default()
            });
        }
    }
    // Companies that are not CSP customers.
    company_id += rng.range(1, 6);
    cw.companies.push(CwCompany {
        id: company_id,
        identifier: cw_identifier("Dicker Data", &mut identifiers),
        name: "Dicker Data Limited".into(),
        status: "Active".into(),
        types: vec!["Vendor".into()],
        website: Some("dickerdata.com.au".into()),
        ..Default::default()
    });
    for prospect in PROSPECTS {
        if keys.contains(&normalise_name(prospect)) {
            continue;
        }
        company_id += rng.range(1, 6);
        cw.companies.push(CwCompany {
            id: company_id,
            identifier: cw_identifier(prospect, &mut identifiers),
            name: prospect.into(),
            status: "Active".into(),
            types: vec!["Prospect".into()],
            phone_number: Some(phone(rng, "AU")),
            ..Default::default()
        });
        break;
    }
    cw
}

fn emit_autotask(
    rng: &mut Rng,
    custs: &[CustM],
    keys: &BTreeSet<String>,
    msp: &MspInfo,
    today: NaiveDate,
) -> Autotask {
    let mut at = Autotask {
        username: format!("cspsync-api@{}", msp.domain),
        secret: random_string(rng, 24, MIXED_ALNUM),
        integration_codes: vec![random_string(rng, 27, UPPER_ALNUM)],
        zone_name: "Australia / New Zealand".into(),
        // [UNCONFIRMED] The AU/NZ zone is served from webservices6; the sim serves it at
        // /autotask/zone6/ (§6.1).
        zone_number: 6,
        ci: rng.range(10_000, 999_999),
        ..Default::default()
    };
    let mut service_ids: BTreeMap<(usize, Term, Plan), u64> = BTreeMap::new();
    let mut next_service = 9000u64;
    for (product, term, plan) in used_items(custs) {
        let p = &CATALOGUE[product];
        next_service += rng.range(1, 4);
        service_ids.insert((product, term, plan), next_service);
        at.services.push(AtService {
            id: next_service,
            name: item_description(p, term, plan),
            description: Some(format!("{} - {} commitment", p.name, term.words())),
            sku: Some(stock_code(p, term, plan)),
            unit_price: money(price_cents(p, term)),
            unit_cost: money(cost_cents(p, term)),
            // [UNCONFIRMED] periodType 2 as "monthly", as the community integration uses (§6.3).
            period_type: Some(2),
            is_active: true,
            ..Default::default()
        });
    }
    let mut legacy_ids: BTreeMap<usize, u64> = BTreeMap::new();
    for product in unmapped_products(custs, AT) {
        let p = &CATALOGUE[product];
        next_service += rng.range(1, 4);
        legacy_ids.insert(product, next_service);
        at.services.push(AtService {
            id: next_service,
            name: format!("{} licence", p.name),
            description: Some("Legacy service".into()),
            sku: None,
            unit_price: money(price_cents(p, Term::P1Y)),
            unit_cost: money(cost_cents(p, Term::P1Y)),
            period_type: Some(2),
            is_active: true,
            ..Default::default()
        });
    }

    let mut company_id = 500u64;
    let mut contract_id = 7000u64;
    let mut cs_id = 12_000u64;
    let mut unit_id = 300_000u64;
    for c in custs {
        let web = psa_website(rng, c);
        let name = psa_name(rng, c, keys, web.is_some());
        company_id += rng.range(1, 6);
        at.companies.push(AtCompany {
            id: company_id,
            company_name: name.clone(),
            company_number: None,
            company_type: 1,
            is_active: true,
            phone: Some(phone(rng, c.country)),
            web_address: web,
            ..Default::default()
        });
        contract_id += rng.range(1, 3);
        let start = sub_months(first_of_month(today), rng.range(0, 10) as u32);
        let end = add_days(add_months(start, 12), -1);
        at.contracts.push(AtContract {
            id: contract_id,
            company_id,
            contract_name: format!("Microsoft CSP - {name}"),
            contract_number: Some(format!("CSP-{contract_id}")),
            contract_type: 7,
            status: 1,
            start_date: Some(start),
            end_date: Some(end),
            // [UNCONFIRMED] 2 = monthly, as in §6.3.
            contract_period_type: Some(2),
            description: Some("Microsoft licences bought through Dicker Data".into()),
            ..Default::default()
        });
        for l in c.lines.iter().filter(|l| l.billed()) {
            let p = l.p();
            let service_id = if l.unmapped_product[AT] {
                legacy_ids.get(&l.product).copied().unwrap_or_default()
            } else {
                service_ids
                    .get(&(l.product, l.term, l.plan))
                    .copied()
                    .unwrap_or_default()
            };
            cs_id += rng.range(1, 4);
            let price = money(price_cents(p, l.term));
            let cost = money(cost_cents(p, l.term));
            at.contract_services.push(AtContractService {
                id: cs_id,
                contract_id,
                service_id,
                unit_price: price,
                unit_cost: cost,
                adjusted_price: Some(price),
                invoice_description: Some(format!("{} ({})", p.name, l.term.words())),
                internal_description: None,
                ..Default::default()
            });
            // One record per month of the contract (§6.3 ContractServiceUnits): the current
            // and future months carry today's quantity, past months what was billed then.
            let line_start = l.start();
            for m in 0..12 {
                let ps = add_months(start, m);
                let pe = add_days(add_months(start, m + 1), -1);
                if pe < line_start {
                    continue;
                }
                let units = if pe < today {
                    l.psa_at(AT, pe)
                } else {
                    l.psa(AT)
                };
                if units == 0 {
                    continue;
                }
                unit_id += 1;
                at.contract_service_units.push(AtContractServiceUnit {
                    id: unit_id,
                    contract_id,
                    contract_service_id: cs_id,
                    service_id,
                    start_date: Some(ps),
                    end_date: Some(pe),
                    units: i64::from(units),
                    price,
                    cost,
                    ..Default::default()
                });
            }
        }
    }
    for prospect in PROSPECTS.iter().rev() {
        if keys.contains(&normalise_name(prospect)) {
            continue;
        }
        company_id += rng.range(1, 6);
        at.companies.push(AtCompany {
            id: company_id,
            company_name: (*prospect).into(),
            // 3 = Prospect.
            company_type: 3,
            is_active: true,
            phone: Some(phone(rng, "AU")),
            ..Default::default()
        });
        break;
    }
    at
}

const XERO_ACCOUNTS: [(&str, &str, &str, &str, &str, &str); 16] = [
    (
        "090",
        "Business Bank Account",
        "BANK",
        "ASSET",
        "BASEXCLUDED",
        "ACTIVE",
    ),
    ("200", "Sales", "REVENUE", "REVENUE", "OUTPUT", "ACTIVE"),
    (
        "260",
        "Other Revenue",
        "OTHERINCOME",
        "REVENUE",
        "OUTPUT",
        "ACTIVE",
    ),
    (
        "270",
        "Interest Income",
        "OTHERINCOME",
        "REVENUE",
        "BASEXCLUDED",
        "ACTIVE",
    ),
    (
        "310",
        "Cost of Goods Sold",
        "DIRECTCOSTS",
        "EXPENSE",
        "INPUT",
        "ACTIVE",
    ),
    (
        "400",
        "Advertising",
        "OVERHEADS",
        "EXPENSE",
        "INPUT",
        "ACTIVE",
    ),
    (
        "404",
        "Bank Fees",
        "OVERHEADS",
        "EXPENSE",
        "BASEXCLUDED",
        "ACTIVE",
    ),
    (
        "412",
        "Consulting & Accounting",
        "OVERHEADS",
        "EXPENSE",
        "INPUT",
        "ACTIVE",
    ),
    (
        "429",
        "General Expenses",
        "OVERHEADS",
        "EXPENSE",
        "INPUT",
        "ACTIVE",
    ),
    (
        "453",
        "Office Expenses",
        "OVERHEADS",
        "EXPENSE",
        "INPUT",
        "ACTIVE",
    ),
    (
        "455",
        "Software Subscriptions (old)",
        "OVERHEADS",
        "EXPENSE",
        "INPUT",
        "ARCHIVED",
    ),
    (
        "489",
        "Telephone & Internet",
        "OVERHEADS",
        "EXPENSE",
        "INPUT",
        "ACTIVE",
    ),
    (
        "610",
        "Accounts Receivable",
        "CURRENT",
        "ASSET",
        "BASEXCLUDED",
        "ACTIVE",
    ),
    (
        "800",
        "Accounts Payable",
        "CURRLIAB",
        "LIABILITY",
        "BASEXCLUDED",
        "ACTIVE",
    ),
    (
        "820",
        "GST",
        "CURRLIAB",
        "LIABILITY",
        "BASEXCLUDED",
        "ACTIVE",
    ),
    (
        "960",
        "Retained Earnings",
        "EQUITY",
        "EQUITY",
        "BASEXCLUDED",
        "ACTIVE",
    ),
];

fn month_name(d: NaiveDate) -> String {
    const NAMES: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    format!("{} {}", NAMES[d.month0() as usize], d.year())
}

fn emit_xero(
    rng: &mut Rng,
    custs: &[CustM],
    keys: &BTreeSet<String>,
    msp: &MspInfo,
    today: NaiveDate,
) -> Xero {
    let mut org = XeroOrg {
        tenant_id: rng.guid(),
        name: format!("{} (AU)", msp.name),
        ..Default::default()
    };
    for (code, name, typ, class, tax, status) in XERO_ACCOUNTS {
        org.accounts.push(XeroAccount {
            account_id: rng.guid(),
            code: code.into(),
            name: name.into(),
            account_type: typ.into(),
            class: class.into(),
            status: status.into(),
            tax_type: Some(tax.into()),
            ..Default::default()
        });
    }
    let updated = |rng: &mut Rng| Some(days_ago_time(rng, today, 1, 400));
    let dd_contact = rng.guid();
    org.contacts.push(XeroContact {
        contact_id: dd_contact.clone(),
        name: "Dicker Data Limited".into(),
        contact_status: "ACTIVE".into(),
        email_address: None,
        account_number: None,
        is_supplier: true,
        is_customer: false,
        updated: updated(rng),
        ..Default::default()
    });
    let mut contact_ids = Vec::with_capacity(custs.len());
    for c in custs {
        let id = rng.guid();
        let domain = match &c.unmapped {
            Some(t) => t.domain.clone(),
            None => c.custom_domains[0].clone(),
        };
        org.contacts.push(XeroContact {
            contact_id: id.clone(),
            name: psa_name(rng, c, keys, false),
            contact_status: "ACTIVE".into(),
            email_address: Some(format!("accounts@{domain}")),
            account_number: None,
            is_supplier: false,
            is_customer: true,
            updated: updated(rng),
            ..Default::default()
        });
        contact_ids.push(id);
    }
    for (i, (name, supplier)) in UNRELATED_CONTACTS.iter().enumerate() {
        if keys.contains(&normalise_name(name)) {
            continue;
        }
        org.contacts.push(XeroContact {
            contact_id: rng.guid(),
            name: (*name).into(),
            contact_status: if i == UNRELATED_CONTACTS.len() - 1 {
                "ARCHIVED".into()
            } else {
                "ACTIVE".into()
            },
            is_supplier: *supplier,
            is_customer: false,
            updated: updated(rng),
            ..Default::default()
        });
    }

    // Invoices: the period before last (PAID) and the last period (the app's latest run).
    let this_month = first_of_month(today);
    let last_start = sub_months(this_month, 1);
    let last_end = add_days(this_month, -1);
    let prev_start = sub_months(this_month, 2);
    let prev_end = add_days(last_start, -1);
    let reference = |d: NaiveDate| format!("CSP {}-{:02}", d.year(), d.month());
    let mut number = 1000u32;
    let make_invoice = |rng: &mut Rng,
                        number: &mut u32,
                        ci: usize,
                        period: NaiveDate,
                        end: NaiveDate,
                        last: bool| {
        let c = &custs[ci];
        let mut lines = Vec::new();
        for l in c.lines.iter().filter(|l| l.billed()) {
            let qty = if last {
                l.psa(XERO)
            } else {
                l.psa_at(XERO, end)
            };
            if qty == 0 {
                continue;
            }
            let p = l.p();
            let mapped = !l.unmapped_product[XERO];
            lines.push(XeroLineItem {
                line_item_id: rng.guid(),
                description: if mapped {
                    format!(
                        "{} - {}",
                        item_description(p, l.term, l.plan),
                        month_name(period)
                    )
                } else {
                    format!("Microsoft licences - {}", month_name(period))
                },
                quantity: Decimal::from(qty),
                unit_amount: money(price_cents(p, l.term)),
                item_code: mapped.then(|| l.stock_code()),
                account_code: Some("200".into()),
                tax_type: Some("OUTPUT".into()),
                ..Default::default()
            });
        }
        if lines.is_empty() {
            return None;
        }
        *number += 1;
        let status = if !last {
            "PAID"
        } else if rng.below(4) == 0 {
            "DRAFT"
        } else {
            "AUTHORISED"
        };
        Some(XeroInvoice {
            invoice_id: rng.guid(),
            invoice_type: "ACCREC".into(),
            contact_id: contact_ids[ci].clone(),
            invoice_number: Some(format!("INV-{:04}", *number)),
            reference: Some(reference(period)),
            date: Some(end),
            due_date: Some(add_days(end, 14)),
            status: status.into(),
            line_amount_types: "Exclusive".into(),
            currency_code: "AUD".into(),
            line_items: lines,
            created_by_app: true,
            updated: Some(random_time(rng, add_days(end, 1))),
            ..Default::default()
        })
    };
    for ci in 0..custs.len() {
        if let Some(inv) = make_invoice(rng, &mut number, ci, prev_start, prev_end, false) {
            org.invoices.push(inv);
        }
    }
    for ci in 0..custs.len() {
        if let Some(inv) = make_invoice(rng, &mut number, ci, last_start, last_end, true) {
            org.invoices.push(inv);
        }
    }
    // Dicker Data's bill for the last period: what the MSP pays, at cost.
    let mut bill_lines = Vec::new();
    for c in custs {
        for l in c.lines.iter().filter(|l| l.billed()) {
            let p = l.p();
            bill_lines.push(XeroLineItem {
                line_item_id: rng.guid(),
                description: format!(
                    "{} - {} - {}",
                    c.name.to_uppercase(),
                    dd_description(p, l.term, l.plan),
                    month_name(last_start)
                ),
                quantity: Decimal::from(l.dd_total()),
                unit_amount: money(cost_cents(p, l.term)),
                item_code: Some(l.stock_code()),
                account_code: Some("310".into()),
                tax_type: Some("INPUT".into()),
                ..Default::default()
            });
        }
    }
    if !bill_lines.is_empty() {
        org.invoices.push(XeroInvoice {
            invoice_id: rng.guid(),
            invoice_type: "ACCPAY".into(),
            contact_id: dd_contact,
            invoice_number: Some(format!("DD{}", rng.range(4_000_000, 4_999_999))),
            reference: None,
            date: Some(last_end),
            due_date: Some(add_days(last_end, 30)),
            status: "AUTHORISED".into(),
            line_amount_types: "Exclusive".into(),
            currency_code: "AUD".into(),
            line_items: bill_lines,
            created_by_app: true,
            updated: Some(random_time(rng, add_days(last_end, 1))),
            ..Default::default()
        });
    }
    Xero {
        organisations: vec![org],
        ..Default::default()
    }
}

/// Generate the world for `opts`: deterministic in `(customers, seed, today)`.
pub fn generate(opts: &GenOptions) -> World {
    let today = opts.today;
    let mut rng = Rng::new(opts.seed);

    // The MSP.
    let msp_base = *rng.pick(&MSP_NAMES);
    let msp_slug = alnum(msp_base).to_lowercase();
    let msp = MspInfo {
        name: format!("{msp_base} Pty Ltd"),
        slug: msp_slug.clone(),
        domain: format!("{msp_slug}.com.au"),
    };
    let initial = format!("{msp_slug}.onmicrosoft.com");
    let staff = rng.range(15, 40) as usize;
    let msp_tenant = MspTenant {
        tenant_id: rng.guid(),
        display_name: msp.name.clone(),
        country: "AU".into(),
        verified_domains: vec![
            Domain {
                name: msp.domain.clone(),
                is_default: true,
                is_initial: false,
                ..Default::default()
            },
            Domain {
                name: initial.clone(),
                is_default: false,
                is_initial: true,
                ..Default::default()
            },
        ],
        users: staff_users(&mut rng, staff, &msp.domain, &initial),
        mpn_id: format!("{}", rng.range(1_000_000, 6_999_999)),
        partner_name: msp.name.clone(),
        ..Default::default()
    };

    // Customers, each from its own stream (so customer i is the same whatever N is).
    let mut book = NameBook::default();
    book.keys.insert(normalise_name(&msp.name));
    let mut custs: Vec<CustM> = (0..opts.customers)
        .map(|i| {
            let mut crng = Rng::new(mix(opts.seed, i as u64 + 1));
            build_customer(&mut crng, today, &mut book)
        })
        .collect();

    let planted = plant(
        Rng::new(mix(opts.seed, 0x504C_414E_5445_4421)),
        &mut custs,
        &book.keys,
    );

    let mut erng = Rng::new(mix(opts.seed, 0x454D_4954));
    World {
        meta: Meta {
            description: format!(
                "Generated by cspsync: {} customers, seed {}, dates relative to {today}. \
                 The mismatches planted on purpose are listed in `planted`.",
                opts.customers, opts.seed
            ),
            seed: Some(opts.seed),
            today: Some(today),
            ..Default::default()
        },
        msp: msp_tenant,
        customers: emit_microsoft(&custs),
        dicker_data: emit_dicker(&mut erng, &custs, today),
        connectwise: emit_connectwise(&mut erng, &custs, &book.keys, &msp, today),
        autotask: emit_autotask(&mut erng, &custs, &book.keys, &msp, today),
        xero: emit_xero(&mut erng, &custs, &book.keys, &msp, today),
        planted,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_normalise_as_documented() {
        for (a, b) in [
            ("Atlas Outsourcing Pty. Ltd.", "ATLAS OUTSOURCING PTY LTD"),
            ("Atlas Outsourcing", "Atlas Outsourcing, Pty Limited"),
            ("O'Brien Plumbing Ltd", "OBrien Plumbing"),
            ("Kauri Logistics Limited", "KAURI LOGISTICS"),
            ("Atlas Outsourcing Pty.Ltd.", "atlas outsourcing"),
        ] {
            assert_eq!(normalise_name(a), normalise_name(b), "{a} vs {b}");
        }
        assert_ne!(
            normalise_name("CSP Tech Limited"),
            normalise_name("CSP Technology")
        );
    }

    #[test]
    fn anniversaries_clamp_and_stop_at_today() {
        let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).unwrap_or_default();
        assert_eq!(
            latest_anniversary(d(2024, 1, 31), 1, d(2024, 3, 15)),
            d(2024, 2, 29)
        );
        assert_eq!(
            latest_anniversary(d(2023, 5, 10), 12, d(2026, 5, 9)),
            d(2025, 5, 10)
        );
        assert_eq!(
            latest_anniversary(d(2026, 5, 10), 12, d(2026, 5, 10)),
            d(2026, 5, 10)
        );
    }

    #[test]
    fn stock_codes_follow_the_distributor_convention() {
        let p = &CATALOGUE[PREMIUM];
        assert_eq!(
            stock_code(p, Term::P1Y, Plan::Monthly),
            "P1Y:CFQ7TTC0LCHC:0002:1:"
        );
        assert_eq!(
            stock_code(p, Term::P1Y, Plan::Annual),
            "P1Y:CFQ7TTC0LCHC:0002:Y:"
        );
        let ids: BTreeSet<_> = CATALOGUE.iter().map(product_key).collect();
        assert_eq!(ids.len(), CATALOGUE.len());
        let skus: BTreeSet<_> = CATALOGUE.iter().map(|p| p.graph_sku).collect();
        assert_eq!(skus.len(), CATALOGUE.len());
    }
}
