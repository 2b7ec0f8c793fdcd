//! Names, words and identifiers: everything human-readable the generator
//! writes, plus the few bit tricks that make identifiers unique without
//! remembering them.

use rand::Rng;
use rand::rngs::SmallRng;

pub(super) const TEAM_NAMES: &[&str] = &[
    "Dimagi Health Pilots",
    "Bright Futures Foundation",
    "Kenya Maternal Care",
    "Learning Links",
    "Open Clinic Network",
    "Village Voices",
    "Youth Connect Africa",
    "CareBridge India",
    "Nutrition Now",
    "Teach Forward",
    "Malaria Free Coalition",
    "Farmers First",
    "Mental Wellness Hub",
    "Clean Water Project",
    "HIV Support Line",
    "Literacy Lab",
    "Community Health Workers Kenya",
    "Mothers & Babies Pilot",
    "Skills for Work",
    "Rural Finance Coach",
    "TB Adherence Program",
    "Early Childhood Alliance",
    "Refugee Info Desk",
    "Vaccine Outreach",
];

pub(super) const CHATBOT_NAMES: &[&str] = &[
    "Maternal Health Assistant",
    "Malaria FAQ",
    "Teacher Coach",
    "Onboarding Helper",
    "Nutrition Advisor",
    "Vaccine Reminder",
    "Farmer Advisory",
    "TB Adherence Buddy",
    "Mental Health Check-in",
    "Job Skills Tutor",
    "Reading Buddy",
    "Family Planning Info",
    "HIV Counselling",
    "Survey Bot",
    "CHW Supervisor",
    "Water Safety Guide",
    "Finance Coach",
    "Parenting Tips",
    "Symptom Triage",
    "Support Desk",
    "English Tutor",
    "Math Practice",
    "Feedback Collector",
    "Referral Assistant",
    "Breastfeeding Support",
    "Immunization Tracker",
];

pub(super) const FIRST_NAMES: &[&str] = &[
    "Amina", "Brian", "Chipo", "Daniel", "Esther", "Fatima", "Grace", "Hassan", "Isaac", "Joyce", "Kwame", "Lerato",
    "Mary", "Nikhil", "Olu", "Priya", "Rashid", "Sarah", "Thabo", "Uche", "Vusi", "Wanjiru", "Xolani", "Yusuf",
    "Zainab", "Aisha", "Ben", "Carlos", "Deepa", "Elena", "Faith", "George", "Hannah", "Ibrahim", "Jane", "Kofi",
    "Lina", "Moses", "Neha", "Omar", "Peter", "Rose", "Samuel", "Tendai", "Victor", "Winnie", "Zodwa", "Anjali",
    "Musa", "Nomsa", "Ravi", "Sipho", "Adaeze", "Juma", "Lucia", "Mehmet",
];

pub(super) const LAST_NAMES: &[&str] = &[
    "Okafor", "Mwangi", "Naidoo", "Otieno", "Banda", "Dlamini", "Kamau", "Mensah", "Patel", "Sharma", "Nkosi",
    "Adeyemi", "Mutua", "Chanda", "Phiri", "Abdi", "Hussein", "Odhiambo", "Kumar", "Singh", "Moyo", "Ndlovu",
    "Achieng", "Wanjiku", "Owusu", "Boateng", "Diallo", "Traore", "Khumalo", "Zulu", "Garcia", "Silva", "Smith",
    "Nguyen", "Rahman", "Ali", "Kariuki", "Mokoena", "Eze", "Nwosu", "Tembo", "Lungu", "Reddy", "Iyer",
];

const EMAIL_DOMAINS: &[&str] = &[
    "gmail.com",
    "gmail.com",
    "gmail.com",
    "yahoo.com",
    "outlook.com",
    "hotmail.com",
    "icloud.com",
    "proton.me",
    "mail.co.za",
    "example.org",
];

/// (country code, mobile prefix, subscriber digits), picked by team id.
const PHONE_PLANS: &[(&str, &str, u32)] = &[
    ("254", "7", 8),
    ("27", "8", 8),
    ("91", "9", 9),
    ("234", "80", 8),
    ("256", "7", 8),
    ("255", "7", 8),
    ("263", "77", 7),
    ("1", "415", 7),
    ("233", "24", 7),
    ("260", "97", 7),
];

pub(super) const USER_TAGS: &[&str] = &[
    "needs review",
    "escalate",
    "follow up",
    "positive feedback",
    "negative feedback",
    "bug",
    "training data",
    "off topic",
    "urgent",
    "resolved",
    "spam",
    "feature request",
    "great answer",
    "hallucination",
    "pii",
];
pub(super) const BOT_RESPONSE_TAGS: &[&str] = &[
    "greeting",
    "handoff to human",
    "out of scope",
    "fallback",
    "follow-up question",
];
pub(super) const SAFETY_TAGS: &[&str] = &["unsafe user message", "unsafe bot response", "pii detected"];
pub(super) const RATING_TAGS: &[&str] = &["thumbs up", "thumbs down"];
pub(super) const ERROR_TAGS: &[&str] = &["llm error", "timeout", "rate limited"];
pub(super) const MEDIA_TAGS: &[&str] = &["voice", "image", "document"];

const WORDS: &[&str] = &[
    "the",
    "a",
    "to",
    "and",
    "of",
    "you",
    "your",
    "is",
    "it",
    "in",
    "for",
    "that",
    "can",
    "with",
    "this",
    "be",
    "on",
    "my",
    "i",
    "we",
    "have",
    "what",
    "how",
    "when",
    "should",
    "do",
    "not",
    "are",
    "will",
    "please",
    "thank",
    "help",
    "baby",
    "child",
    "mother",
    "health",
    "clinic",
    "nurse",
    "doctor",
    "medicine",
    "dose",
    "vaccine",
    "appointment",
    "fever",
    "pain",
    "water",
    "food",
    "eat",
    "drink",
    "sleep",
    "day",
    "week",
    "month",
    "today",
    "tomorrow",
    "morning",
    "evening",
    "school",
    "teacher",
    "lesson",
    "class",
    "student",
    "reading",
    "book",
    "practice",
    "answer",
    "question",
    "farm",
    "crop",
    "seed",
    "rain",
    "market",
    "price",
    "money",
    "save",
    "loan",
    "account",
    "phone",
    "message",
    "reminder",
    "visit",
    "home",
    "family",
    "community",
    "support",
    "information",
    "advice",
    "symptoms",
    "treatment",
    "important",
    "remember",
    "try",
    "again",
    "sure",
    "okay",
    "yes",
    "no",
    "maybe",
    "also",
    "very",
    "good",
    "better",
    "best",
    "safe",
    "healthy",
    "weight",
    "pregnant",
    "pregnancy",
    "breastfeeding",
    "nutrition",
    "vegetables",
    "fruit",
    "protein",
    "iron",
    "tablets",
    "mosquito",
    "net",
    "malaria",
    "test",
    "result",
    "hospital",
    "emergency",
    "call",
    "talk",
    "someone",
    "feel",
    "feeling",
    "stress",
    "worried",
    "calm",
    "breathe",
    "walk",
    "exercise",
    "job",
    "work",
    "skills",
    "interview",
    "plan",
    "goal",
    "next",
    "step",
    "first",
    "after",
    "before",
    "every",
    "each",
    "few",
    "many",
    "more",
    "less",
    "often",
    "usually",
    "sometimes",
    "here",
    "there",
    "about",
    "because",
    "so",
    "but",
    "if",
    "then",
    "could",
    "would",
    "need",
    "want",
    "know",
    "understand",
    "explain",
    "example",
    "simple",
    "easy",
    "hard",
    "right",
    "wrong",
    "new",
    "old",
    "small",
    "big",
    "time",
];

const SYSTEM_MESSAGES: &[&str] = &[
    "The participant joined the conversation.",
    "Session ended due to inactivity.",
    "Conversation transferred to a human agent.",
    "The participant has given consent to continue.",
    "Reminder sent to the participant.",
    "The chatbot was updated to a new version.",
];

/// Picks uniformly from a non-empty slice.
pub(super) fn pick<'a, T>(rng: &mut SmallRng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

/// Lower-case, URL-safe slug: ASCII letters and digits joined by single
/// dashes (`&` becomes `and`).
pub(super) fn slugify(name: &str) -> String {
    let mut s = String::with_capacity(name.len());
    for c in name.replace('&', " and ").chars() {
        if c.is_ascii_alphanumeric() {
            s.push(c.to_ascii_lowercase());
        } else if !s.is_empty() && !s.ends_with('-') {
            s.push('-');
        }
    }
    while s.ends_with('-') {
        s.pop();
    }
    s
}

/// SplitMix64 finaliser: a good 64-bit mixing function.
pub(super) fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A bijection of `0..n`: two affine rounds whose multipliers are prime to
/// `n` and near `n` times 0.618 and 0.414, so consecutive counters land far
/// apart. Distinct counters give distinct results, so identifiers built from
/// it never collide.
fn perm(x: u64, n: u64, salt: u64) -> u64 {
    fn gcd(mut a: u64, mut b: u64) -> u64 {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    }
    let coprime_near = |f: f64| {
        let mut a = ((n as f64 * f) as u64).max(1);
        while gcd(a, n) != 1 {
            a += 1;
        }
        u128::from(a)
    };
    let n128 = u128::from(n);
    let y = (coprime_near(0.618_033_988_7) * u128::from(x % n) + u128::from(salt % n)) % n128;
    ((coprime_near(0.414_213_562_4) * y + u128::from((salt >> 21) % n)) % n128) as u64
}

/// Where the generator's UUIDs (and anonymous identifiers) come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uuids {
    /// Random version-4 UUIDs from the seeded generator: a new data set.
    Random,
    /// Version-8 UUIDs made of the row's table and id ([`row_uuid`]): rows
    /// added to an existing data set, which then can't repeat any UUID in
    /// it, random or made from an id, whatever the seed.
    FromRowIds,
}

/// What a [`Uuids::FromRowIds`] UUID names, besides the id.
#[derive(Debug, Clone, Copy)]
pub(super) enum UuidOf {
    Chatbot = 1,
    Participant = 2,
    Channel = 3,
    Session = 4,
    /// An anonymous participant identifier, from its counter.
    Identifier = 5,
}

impl Uuids {
    /// The next UUID: random bits made version 4, or [`row_uuid`].
    pub(super) fn next(self, rng: &mut SmallRng, of: UuidOf, id: i64) -> u128 {
        match self {
            Uuids::Random => {
                let bits: u128 = rng.random();
                (bits & !(0xF000_u128 << 64) & !(0xC000_u128 << 48)) | (0x4000_u128 << 64) | (0x8000_u128 << 48)
            }
            Uuids::FromRowIds => row_uuid(of, id),
        }
    }
}

/// A version-8 UUID (RFC 9562) holding `of` and all 64 bits of `id`: one
/// per (kind, id), and never equal to a version-4 UUID.
pub(super) fn row_uuid(of: UuidOf, id: i64) -> u128 {
    let id = u128::from(id as u64);
    (u128::from(of as u16) << 80)
        | (0x8000_u128 << 64)
        | ((id >> 62) << 64)
        | (0x8000_u128 << 48)
        | (id & ((1 << 62) - 1))
}

/// Formats a UUID's 128 bits (version and variant already in them).
pub(super) fn push_uuid(out: &mut String, v: u128) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in 0..32 {
        if matches!(i, 8 | 12 | 16 | 20) {
            out.push('-');
        }
        let nibble = (v >> (124 - 4 * i)) & 0xF;
        out.push(HEX[nibble as usize] as char);
    }
}

/// A person's name drawn from the pools: (first, last) indices.
pub(super) fn person(rng: &mut SmallRng) -> (&'static str, &'static str) {
    (*pick(rng, FIRST_NAMES), *pick(rng, LAST_NAMES))
}

/// How a participant is identified on a platform; see [`identifier`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IdStyle {
    Phone,
    TelegramChat,
    FacebookPsid,
    SlackUser,
    PatientNumber,
    ConnectUser,
    Email,
    Anonymous,
    ExternalUser,
    Matrix,
}

/// Writes a realistic identifier. `counter` must be unique within the team
/// (the generator counts participants per team; `simulate_day` continues
/// above the largest participant id), which makes the identifier unique per
/// (team, platform) without remembering the ones already handed out;
/// `Anonymous` is a UUID, random or made from `counter` (see [`Uuids`]).
/// The salt depends on the team id only, so identifiers of later simulated
/// days never collide with the generated ones.
pub(super) fn identifier(
    out: &mut String,
    style: IdStyle,
    team_id: i64,
    counter: u64,
    (first, last): (&str, &str),
    rng: &mut SmallRng,
    uuids: Uuids,
) {
    use std::fmt::Write;
    out.clear();
    let salt = mix64(team_id as u64);
    match style {
        IdStyle::Phone => {
            let (cc, prefix, digits) = PHONE_PLANS[(team_id as usize) % PHONE_PLANS.len()];
            let n = 10u64.pow(digits);
            let _ = write!(
                out,
                "+{cc}{prefix}{:0width$}",
                perm(counter, n, salt),
                width = digits as usize
            );
        }
        IdStyle::TelegramChat => {
            let _ = write!(out, "{}", 100_000_000 + perm(counter, 900_000_000, salt));
        }
        IdStyle::FacebookPsid => {
            let _ = write!(out, "2{:015}", perm(counter, 1_000_000_000_000_000, salt));
        }
        IdStyle::SlackUser => {
            out.push_str("U0");
            push_base36(out, perm(counter, 36u64.pow(9), salt), 9, true);
        }
        IdStyle::PatientNumber => {
            let _ = write!(out, "{:07}", perm(counter, 10_000_000, salt));
        }
        IdStyle::ConnectUser => {
            push_base36(out, perm(counter, 36u64.pow(10), salt), 10, false);
        }
        IdStyle::Email => {
            let (f, l) = (first.to_ascii_lowercase(), last.to_ascii_lowercase());
            // A number that differs for every counter: scrambled below 100000,
            // the counter itself above (never a scrambled value).
            let counter = if counter < 100_000 {
                perm(counter, 100_000, salt)
            } else {
                counter
            };
            let domain = pick(rng, EMAIL_DOMAINS);
            match rng.random_range(0..4) {
                0 => {
                    let _ = write!(out, "{f}.{l}{counter}@{domain}");
                }
                1 => {
                    let _ = write!(out, "{f}{counter}@{domain}");
                }
                2 => {
                    let _ = write!(out, "{}{l}{counter}@{domain}", &f[..1]);
                }
                _ => {
                    let _ = write!(out, "{f}_{l}{counter}@{domain}");
                }
            }
        }
        IdStyle::Anonymous => push_uuid(out, uuids.next(rng, UuidOf::Identifier, counter as i64)),
        IdStyle::ExternalUser => {
            let _ = write!(out, "ext-{:08}", perm(counter, 100_000_000, salt));
        }
        IdStyle::Matrix => {
            let _ = write!(out, "@{}{counter}:matrix.org", first.to_ascii_lowercase());
        }
    }
}

fn push_base36(out: &mut String, mut v: u64, width: usize, upper: bool) {
    let digits: &[u8; 36] = if upper {
        b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    } else {
        b"0123456789abcdefghijklmnopqrstuvwxyz"
    };
    let mut buf = [b'0'; 16];
    for slot in buf[..width].iter_mut().rev() {
        *slot = digits[(v % 36) as usize];
        v /= 36;
    }
    out.extend(buf[..width].iter().map(|&b| b as char));
}

/// A block of sentence-like text from which message contents are cut, so
/// that producing 10M contents is a slice copy each.
#[derive(Debug)]
pub(super) struct TextPool {
    text: String,
    /// Byte offsets where sentences start (each followed by >= 300 bytes).
    starts: Vec<u32>,
    salt: u64,
}

impl TextPool {
    pub(super) fn new(seed: u64) -> Self {
        use rand::SeedableRng;
        let mut rng = SmallRng::seed_from_u64(mix64(seed ^ 0x7E47_7E47));
        let mut text = String::with_capacity(1 << 20);
        let mut starts = Vec::new();
        while text.len() < (1 << 20) {
            starts.push(text.len() as u32);
            let words = rng.random_range(4..18);
            for w in 0..words {
                let word = *pick(&mut rng, WORDS);
                if w == 0 {
                    let mut cs = word.chars();
                    if let Some(c) = cs.next() {
                        text.push(c.to_ascii_uppercase());
                        text.push_str(cs.as_str());
                    }
                } else {
                    text.push(' ');
                    text.push_str(word);
                    if w + 1 < words && rng.random_bool(0.08) {
                        text.push(',');
                    }
                }
            }
            text.push(if rng.random_bool(0.15) { '?' } else { '.' });
            text.push(' ');
        }
        let limit = text.len() - 320;
        starts.retain(|&s| (s as usize) < limit);
        TextPool {
            text,
            starts,
            salt: mix64(seed),
        }
    }

    /// Message text for a message id: 20..=300 characters, starting at a
    /// sentence and ending at a word; AI replies run longer than human turns.
    pub(super) fn content(&self, id: i64, message_type: &str) -> &str {
        const SYSTEM_KEY: u64 = 0x5157;
        let h = mix64(self.salt ^ (id as u64).wrapping_mul(0x9E37_79B9));
        if message_type == "system" {
            return SYSTEM_MESSAGES[(h ^ SYSTEM_KEY) as usize % SYSTEM_MESSAGES.len()];
        }
        let start = self.starts[(h % self.starts.len() as u64) as usize] as usize;
        let h2 = mix64(h);
        let len = if message_type == "ai" {
            60 + (h2 % 241) as usize
        } else {
            32 + (h2 % 120) as usize
        };
        let slice = &self.text[start..start + len];
        let cut = slice.rfind(' ').filter(|&c| c >= 22).unwrap_or(slice.len());
        slice[..cut].trim_end_matches(',')
    }
}
