"""Compiled regexes, word lists and small value checks (Luhn, IP parsing) behind `etl.pii`.

Kept apart so the detector reads short. Every pattern is compiled once at import: `find_pii` runs inside pandas
UDFs over millions of messages.
"""

from __future__ import annotations

import ipaddress
import re


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


UP = "A-ZÀ-ÖØ-Þ"  # upper-case letters, Latin-1 included (José, Zoë, Ólafur)
LO = "a-zß-öø-ÿ"

# ---------------------------------------------------------------- word lists (all lower case)

# Never a name: function words, feelings and adjectives people put after "I'm", words that open a sentence
# in front of a signature, valedictions, kin and role words. Deliberately free of words that are also
# common first names (hope, grace, joy, faith, will, mark, rose, may, june, dawn, ...).
STOP_WORDS = _words("""
a about above after again against all almost alone already also always am an and another any anybody anyone
anything anyway are around as ask asked at away back bad be because been before being below best better
between both but by can cannot could did do does doing done down during each either else enough even ever
every everybody everyone everything few first for from further get gets getting go goes going gone gonna got
had has have having he her here hers herself him himself his how however i if in into is it its itself just
keep kind last least less let like little lot lots many maybe me more most much must my myself need never
new next no nobody none nor not nothing now of off often oh ok okay on once one only or other others our ours
ourselves out over own please pretty quite rather really right same see seem seems she should since so some
somebody someone something sometimes soon sort still such sure than thank thanks that the their theirs them
themselves then there these they thing things this those though through thus to today together tomorrow too
totally toward truly under until up upon us usually very was we well were what whatever when where whether
which while who whom whose why with within without would yes yet you your yours yourself yourselves
abused addicted afraid alive alright angry annoyed anxious ashamed awake aware awful bored brave broke broken
busy calm careful certain clean close cold comfortable confused content crazy curious dead depressed
desperate different disappointed done drunk dumb embarrassed empty exhausted fat fed fine fortunate free
frustrated full funny furious glad good grateful great guilty happy hard heartbroken helpless high home
homeless honest hopeless hungry hurt ill important in insecure jealous late lazy lonely lost loud lucky mad
married miserable nervous nice normal numb old open overwhelmed overweight paranoid positive pregnant proud
quiet ready real sad safe scared selfish serious shy sick single skinny sleepy slow small smart sober sorry
special stressed strong stuck stupid suicidal super terrible terrified thankful thin tired tough trans
true ugly uncomfortable unemployed unhappy upset useless weak weird wonderful worried worse worst worthless
wrong young
feeling feel feels felt trying thinking hoping wondering looking writing asking struggling dealing working
living dating seeing talking going having being getting starting
actually basically currently definitely especially finally generally honestly hopefully literally
obviously personally probably seriously simply sincerely suddenly unfortunately warmly kindly respectfully
best regards cheers love hugs blessings cordially yours regard sincere wishes luck thx ty
hi hello hey dear greetings welcome goodbye bye yes yeah yep nope sir madam maam mom mum dad mother father
mommy daddy brother sister son daughter wife husband boyfriend girlfriend partner friend friends baby
grandma grandpa aunt uncle cousin boss doctor doc therapist counselor counsellor nurse teacher coach
mr mrs ms mx miss dr prof professor anonymous anon unknown
god jesus lord christ allah buddha heaven hell satan
monday tuesday wednesday thursday friday saturday sunday christmas easter thanksgiving halloween
internet google facebook instagram twitter reddit youtube tiktok covid coronavirus
contact visit call email text see read try check find note ask remember consider start stop make take
give tell keep look listen write talk work let go come get help thank
""")

# Words that follow "I'm"/"this is" or precede ", MA"/"— X" capitalised and are still not names:
# nationalities, faiths, identities, diagnoses, places. Used by the weak cues and signatures only, so that
# "my name is Christian" still redacts.
NOT_NAMES = _words("""
american african asian black white latino latina latinx hispanic native indian chinese japanese korean
vietnamese filipino mexican canadian british english irish scottish welsh french german italian spanish
portuguese russian polish ukrainian greek turkish arab arabic persian iranian iraqi israeli jewish muslim
islamic christian catholic protestant baptist mormon hindu sikh buddhist atheist agnostic pagan jehovah
african-american european australian brazilian cuban dominican puerto haitian jamaican nigerian kenyan
gay lesbian bi bisexual pansexual asexual queer straight transgender nonbinary non-binary intersex
bipolar autistic adhd ocd ptsd schizophrenic borderline anorexic bulimic diabetic epileptic dyslexic
america usa canada mexico england britain europe asia africa australia china japan india texas california
florida york ohio michigan boston chicago seattle atlanta dallas houston
january february march july september october november december spring fall winter
san los las fort saint anxiety depression trauma couples family addiction grief
""")

# Common first names, used for lower-case self-introductions ("my name is sarah") and URL slugs.
FIRST_NAMES = _words("""
aaron abby abigail adam adrian ahmed aisha alan albert alex alexa alexander alexis ali alice alicia alison
allison amanda amber amelia amy ana andrea andrew andy angela angelica anita ann anna anne annie anthony
april ariana ashley audrey austin ava barbara ben benjamin beth bethany betty beverly bill billy blake
bob bobby brad bradley brandon brenda brian brianna brittany brooke bruce bryan caitlin caleb cameron
carl carla carlos carmen carol caroline carolyn casey catherine charles charlie charlotte chelsea chloe
chris christina christine christopher cindy claire clara cody colin connor courtney craig crystal cynthia
dakota dan daniel danielle darren dave david dawn dean debbie deborah denise dennis derek diana diane
diego donna doug douglas dylan ed eddie edward elena eli elijah elizabeth ella ellen emily emma eric erica
erin ethan eva evan evelyn faith fatima frank gabriel gabriela gail gary george gina grace greg gregory
hailey haley hannah harry heather helen henry holly hunter ian isaac isabel isabella jack jackie jacob
jake james jamie jane janet jasmine jason javier jeff jeffrey jen jenna jennifer jenny jeremy jerry
jesse jessica jill jim jimmy jo joan joanna jodi joe joel john johnny jon jonathan jordan jorge jose
joseph josh joshua joy joyce juan judy julia julie justin kaitlyn karen kate katherine kathleen kathy katie
kayla keith kelly ken kendra kenneth kevin kim kimberly kristen kyle laura lauren leah lee leo liam linda
lindsay lisa liz logan lori lucas lucy luis luke lydia lynn madison maggie mandy marco margaret maria
marie marilyn mark martha martin mary matt matthew maya megan melissa mia michael michelle miguel mike mila
mohammed molly muhammad monica morgan nancy natalie nathan neil nicholas nick nicole noah nora olivia omar owen pam
pamela patricia patrick paul paula peter philip priya rachel ralph randy raj rebecca robert robin ron
rose ruby russell ruth ryan sabrina sam samantha samuel sandra sara sarah scott sean seth shannon sharon
shawn sherry sophia sophie stacey stacy stephanie stephen steve steven susan tammy tanya tara taylor
teresa terry thomas tiffany tim timothy tina todd tom tommy tony tracy travis trevor tyler valerie vanessa
veronica victor victoria vincent wei wendy william yasmin zach zachary zoe
""")

# ---------------------------------------------------------------- names

_NT = rf"(?:[{UP}]['’])?[{UP}][{LO}]{{0,2}}[{UP}]?[{LO}]+(?:-[{UP}][{LO}]+)?"  # Sarah, O'Neil, McDonald, Mary-Jo
NAME_TOKEN = re.compile(_NT)
_NAME_FULL = rf"{_NT}(?:[ \t]+(?:[{UP}]\.?[ \t]+)?{_NT}){{0,2}}"  # Jane A. Doe, up to three name tokens

CREDENTIALS = (
    "LCSW", "LCSW-C", "LICSW", "LMSW", "LISW", "LSW", "ACSW", "MSW", "LMFT", "MFT", "LPC", "LPC-S", "LPCC", "LPCA",
    "LMHC", "LCPC", "LCMHC", "LCADC", "CADC", "LADC", "LCDC", "NCC", "PhD", "Ph.D.", "PsyD", "Psy.D.", "EdD",
    "Ed.D.", "MD", "M.D.", "DO", "MA", "M.A.", "MS", "M.S.", "MEd", "M.Ed.", "MBA", "RN", "NP", "APRN", "PMHNP",
    "ATR", "ATR-BC", "BCBA", "CEAP", "DBH", "CST", "RPT", "MC", "LMHCA",
)
# Credentials that are also US state codes: "Boston, MA" is a place, so these need a two-token name.
STATE_LIKE_CREDENTIALS = frozenset({"MA", "MS", "MD", "DO", "MC", "NP"})
CREDENTIAL_SLUGS = frozenset(c.lower().replace(".", "") for c in CREDENTIALS) - {"ma", "ms", "md", "do", "mc", "np"}
# Credentials that end a private-practice host name (markmorrislcsw.com); short or word-like ones would
# match ordinary domains (modern.com, webmed.com).
CREDENTIAL_HOST_SUFFIXES = tuple(sorted({c for c in CREDENTIAL_SLUGS if len(c) >= 3} - {"med", "mba", "edd", "cst"}))
_CRED = "(?:" + "|".join(re.escape(c) for c in sorted(CREDENTIALS, key=len, reverse=True)) + r")(?![a-z])"

# "Jane Doe, LCSW" / "John Smith, PhD, LMFT" / "Jane Doe LPC": the name before one or more credentials.
SIGNATURE_CRED = re.compile(rf"(?=[{UP}])(?<![\w])(?P<name>{_NAME_FULL})(?:[ \t]*,[ \t]*|[ \t]+)(?P<cred>{_CRED})")
# "Dr. Jane Doe", "Mrs Smith": the title stays, the name goes.
_TITLE = r"(?:Dr|Doctor|Mr|Mrs|Ms|Mx|Miss|Prof|Professor)"
TITLED_NAME = re.compile(rf"(?=[DMP])\b{_TITLE}\.?[ \t]+(?P<name>(?!{_TITLE}\b){_NAME_FULL})")
_VALEDICTION = (
    r"(?i:warmly|warm(?:est)?[ \t]+regards|kind(?:est)?[ \t]+regards|best(?:[ \t]+regards|[ \t]+wishes)?|regards"
    r"|sincerely(?:[ \t]+yours)?|yours(?:[ \t]+truly)?|respectfully|cheers|thanks|thank[ \t]+you|many[ \t]+thanks"
    r"|take[ \t]+care|blessings|in[ \t]+gratitude|with[ \t]+gratitude|all[ \t]+the[ \t]+best|be[ \t]+well)"
)
# "Warmly, Jane" at the start of a line or after a sentence, the name closing the line.
VALEDICTION_NAME = re.compile(
    r"(?=[WwRrKkBbSsYyCcTtMmIiAa])"  # first letters of the valedictions: lets the engine skip ahead
    r"(?:^|(?<=[.!?(\n])|(?<=[.!?(\n][ \t])|(?<=[.!?(\n][ \t]{2})|(?<=[.!?(\n][ \t]{3}))"
    rf"{_VALEDICTION}[ \t]*[,!.:\-–—]?[ \t]*(?:\r?\n[ \t]*)?"
    rf"(?P<name>{_NAME_FULL})(?=[ \t]*(?:$|[\n,.;!)]))",
    re.M,
)
# "-- Jane Doe" / "— Jane Doe, MA" / "~Mark (www...)": a sign-off mark in front of a name ending the line.
DASH_SIGNOFF = re.compile(
    rf"(?=[-–—~])(?:^|(?<=\s))(?P<dash>--|–|—|~)[ \t]*(?P<name>{_NAME_FULL})(?=[ \t]*(?:$|[\n,.;()]))", re.M
)
# "my name is Sarah", "I'm Maria and", "call me Mike": the first token may be lower case (checked later).
SELF_INTRO = re.compile(
    r"(?=[MmCcIiTtPpFfEe])\b(?P<cue>(?i:my[ \t]+name[ \t]+is|my[ \t]+name['’]?s"
    r"|(?:they|people|friends|everyone)[ \t]+call[ \t]+me"
    r"|call[ \t]+me|i[ \t]+go[ \t]+by|i['’]m|i[ \t]+am|im|this[ \t]+is))[ \t]+"
    rf"(?P<name>[{UP}{LO}][{LO}]{{0,2}}[{UP}]?[{LO}]+(?:-[{UP}][{LO}]+)?(?:[ \t]+{_NT}){{0,2}})\b"
)
# Cheap gates, tested before the regexes above (a lookahead or a literal scan is much faster than a full try
# at every position): lower-case cues for SELF_INTRO and VALEDICTION_NAME, title stems for TITLED_NAME.
INTRO_GATES = ("name", "call me", "i'm", "i’m", "i am", "im ", "this is", "go by")
VALEDICTION_GATE = re.compile(
    r"warm|regards|best|sincerely|yours|respectfully|cheers|thank|care|bless|gratitude|be well"
)
TITLE_GATES = ("Dr", "Doctor", "Mr", "Ms", "Mx", "Miss", "Prof")
DASH_GATES = ("--", "–", "—", "~")
CRED_GATE = re.compile(_CRED)
TEXT_END = re.compile(r"[\s.,;)]*\Z")  # nothing but closing punctuation left
ZIP_AHEAD = re.compile(r"[ \t]+\d{5}")  # "Silver Spring, MD 20910": a state code, not a credential
STRONG_CUE_PREFIXES = ("my", "call", "they", "people", "friends", "everyone", "i go")
# After a weak cue ("I'm X", "this is X") the name must close the clause.
AFTER_WEAK_CUE = re.compile(r"[ \t]*(?:$|[\n,.!?;:)–—-]|(?:and|from|here|btw|speaking|again)\b)")
# A capitalised word after "I'm" with one of these endings is an adjective ("I'm Exhausted and"), unless a known name.
ADJECTIVE_SUFFIXES = ("ing", "ful", "less", "ous", "able", "ible", "ated", "ness", "ed")

# ---------------------------------------------------------------- contact details

EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}\b"
)

_END_NUM = r"(?![\w-]|[.,]\d)"  # a number ends here: not followed by more digits, a letter or a decimal part
PHONE_US = re.compile(
    rf"(?=[\d(+])(?<![\w+#$/.-])(?:\+?1[ .-]?)?(?:\(\d{{3}}\)[ .-]?|\d{{3}}[ .-])\d{{3}}[ .-]\d{{4}}{_END_NUM}"
)
# "+44 20 7946 0958", "+33 1 23 45 67 89", "+4930901820": country code, then groups (digit count checked later).
PHONE_INTL = re.compile(
    rf"(?<![\w+])\+\d{{1,3}}(?:[ .-]?\(0\))?(?:[ .-]?\(?\d{{1,5}}\)?)(?:[ .-]\d{{2,8}}){{1,5}}{_END_NUM}"
    rf"|(?<![\w+])\+\d{{8,15}}{_END_NUM}"
)
NUMBER_GOES_ON = re.compile(r"[-.]\d")
# A bare 10-digit or 7-digit local number only counts after a phone cue ("call me on 5551234567"); the cue is
# never inside a placeholder ("[PHONE]") nor separated from the number by one, so that redacted text stays clean
# on a second pass (the verify gate runs find_pii over exported text).
PHONE_CUED = re.compile(
    r"(?=[CcTtPpNnMmWwRrFf])(?<!\[)(?i:\b(?:call|text|phone|cell|mobile|tel|telephone|fax|number|whatsapp|reach\s+me))"
    r"[^\d\n\[\]]{0,15}"
    rf"(?<![\w#$.-])(?P<num>\d{{10}}|\d{{3}}[.-]\d{{4}}){_END_NUM}"
)
# "ticket #4512-889", "order 555-123-4567": reference numbers shaped like phones are not phones.
REFERENCE_CUE = re.compile(
    r"(?i:\b(?:ticket|order|case|ref|reference|invoice|tracking|confirmation|claim|policy|booking|receipt|serial)"
    r"(?:[ \t]*(?:no\.?|number|num|id))?[ \t]*[:#]?[ \t]*)$"
)

SSN = re.compile(rf"(?=\d)(?<![\w#$/.-])(?!000|666)\d{{3}}(?P<sep>[- ])(?!00)\d{{2}}(?P=sep)(?!0000)\d{{4}}{_END_NUM}")
SSN_CUED = re.compile(
    r"(?=[Ss])(?<!\[)(?i:\b(?:ssn|social[ \t]+security(?:[ \t]+(?:number|no\.?|#))?))[^\d\n\[\]]{0,10}"
    rf"(?P<num>\d{{9}}){_END_NUM}"
)

CARD = re.compile(
    r"(?=\d)(?<![\w.,$#-])(?:\d{4}(?P<s>[ -])\d{4}(?P=s)\d{4}(?P=s)\d{1,4}(?:(?P=s)\d{3})?"
    rf"|\d{{4}}(?P<t>[ -])\d{{6}}(?P=t)\d{{4,5}}|\d{{13,19}}){_END_NUM}"
)

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
IPV4 = re.compile(rf"(?=\d)(?<![\w.])(?:{_OCTET}\.){{3}}{_OCTET}(?![\w]|\.\d)")
IPV6_CANDIDATE = re.compile(r"(?=[0-9A-Fa-f:])(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:]|\.\w)")
VERSION_CUE = re.compile(r"(?i:\b(?:version|ver\.?|build|release|firmware|update|ios|android|windows|macos)[ \t]*)$")

# ---------------------------------------------------------------- addresses

_STATES = (
    "AL AK AZ AR CA CO CT DE DC FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ NM NY NC ND OH OK "
    "OR PA RI SC SD TN TX UT VT VA WA WV WI WY PR"
).split()
_STATE_NAMES = (
    "Alabama|Alaska|Arizona|Arkansas|California|Colorado|Connecticut|Delaware|Florida|Georgia|Hawaii|Idaho|"
    "Illinois|Indiana|Iowa|Kansas|Kentucky|Louisiana|Maine|Maryland|Massachusetts|Michigan|Minnesota|"
    "Mississippi|Missouri|Montana|Nebraska|Nevada|New Hampshire|New Jersey|New Mexico|New York|North Carolina|"
    "North Dakota|Ohio|Oklahoma|Oregon|Pennsylvania|Rhode Island|South Carolina|South Dakota|Tennessee|Texas|"
    "Utah|Vermont|Virginia|Washington|West Virginia|Wisconsin|Wyoming"
)
_STATE = rf"(?:{'|'.join(_STATES)}|{_STATE_NAMES})"
_DIRECTION = r"(?:N|S|E|W|NE|NW|SE|SW|North|South|East|West|Northeast|Northwest|Southeast|Southwest)"
_SUFFIX = (
    r"(?:(?:Street|Avenue|Road|Boulevard|Lane|Drive|Court|Place|Terrace|Way|Circle|Parkway|Highway|Square|Trail"
    r"|Plaza|Alley|Crescent|Expressway|Freeway|Pike|Turnpike|Row|Crossing|Loop|Path)"
    r"|(?:St|Ave|Av|Rd|Blvd|Ln|Dr|Ct|Pl|Ter|Cir|Pkwy|Hwy|Sq|Trl|Plz|Expy|Fwy|Tpke)\.?)(?![\w])"
)
_STREET_WORD = rf"(?:[{UP}][{LO}]+|\d{{1,3}}(?:st|nd|rd|th))"
_UNIT = (
    r"(?:,?[ \t]*(?:Apt|Apartment|Suite|Ste|Unit|Fl|Floor|Rm|Room|Bldg|#)\.?[ \t]*#?[ \t]*[A-Za-z0-9-]{1,6}(?![\w]))"
)
_CITY_STATE_ZIP = (
    rf"(?:,?[ \t]*[{UP}][{LO}]+(?:[ \t]+[{UP}][{LO}]+){{0,2}},?[ \t]+{_STATE}(?:[ \t]+\d{{5}}(?:-\d{{4}})?)?(?![\w])"
    rf"|,?[ \t]+\d{{5}}(?:-\d{{4}})?(?![\w-]))"
)
STREET_ADDRESS = re.compile(
    rf"(?=\d)(?<![\w.,$#/-])\d{{1,6}}[A-Z]?[ \t]+(?:{_DIRECTION}\.?[ \t]+)?"  # house number, pre-direction
    rf"{_STREET_WORD}(?:[ \t]+{_STREET_WORD}){{0,3}}"  # street name
    rf"[ \t]+{_SUFFIX}(?:[ \t]+{_DIRECTION}(?![\w]))?{_UNIT}?{_CITY_STATE_ZIP}?"
)
SENTENCE_BREAK = re.compile(r"\s*(?:$|\n|[A-Z])")  # what follows an abbreviation dot that also ends a sentence
PO_BOX = re.compile(
    rf"(?=[Pp])\b(?i:(?:P\.?[ \t]?O\.?|post[ \t]+office)[ \t]*box)[ \t]+\d{{1,7}}(?![\w]){_CITY_STATE_ZIP}?"
)

# ---------------------------------------------------------------- URLs

_TLDS = (
    "com|org|net|edu|gov|mil|int|io|co|us|uk|ca|au|de|fr|es|it|nl|in|info|biz|me|ly|app|health|blog|online|site"
    "|xyz|tv|fm|page|life|world|care|club|today|network|coach|space|website"
)
URL = re.compile(
    r"(?<![@\w.\-/])(?:(?i:https?://|www\.)[^\s<>\"'`]+"
    rf"|(?i:(?:[a-z0-9][a-z0-9-]{{0,62}}\.)+)(?:{_TLDS})(?![\w-])(?:[/?#][^\s<>\"'`]*)?)"
)
URL_GATE = re.compile(rf"\.(?i:{_TLDS})\b|://|www\.")
URL_TRAILING = ".,;:!?'\"”’)]}>*"

SOCIAL_HOSTS = _words("""
facebook.com fb.com instagram.com twitter.com x.com linkedin.com tiktok.com youtube.com pinterest.com
snapchat.com threads.net t.me venmo.com cash.app patreon.com onlyfans.com soundcloud.com github.com
gitlab.com twitch.tv vk.com mastodon.social bsky.app flickr.com tumblr.com
""")
# First path segments on social hosts that are site pages, not people.
SOCIAL_RESERVED = _words("""
help about policies policy privacy terms legal login signup register share sharer sharer.php home search
explore watch hashtag groups events pages settings intent i jobs company business ads marketplace
results trending topics directory features download apps developers careers press blog support
""")
# Hosts whose paths name a person only after a profile marker (those are caught first); elsewhere generic.
RESOURCE_HOSTS = _words("""
988lifeline.org suicidepreventionlifeline.org crisistextline.org thetrevorproject.org rainn.org thehotline.org
samhsa.gov nimh.nih.gov nih.gov cdc.gov who.int nhs.uk mind.org.uk samaritans.org nami.org apa.org
psychiatry.org counseling.org aamft.org socialworkers.org nbcc.org emdria.org arttherapy.org adaa.org afsp.org
mayoclinic.org webmd.com healthline.com verywellmind.com psychcentral.com psycom.net helpguide.org
childmind.org postpartum.net teenlineonline.org psychologytoday.com goodtherapy.org betterhelp.com
talkspace.com therapistaid.com therapyroute.com therapyden.com openpathcollective.org inclusivetherapists.com
zencare.co headway.co growtherapy.com regain.us teencounseling.com pridecounseling.com faithfulcounseling.com
onlinetherapy.com counselchat.com 7cups.com headspace.com calm.com wikipedia.org psychotherapy.net
""")
# Hosting platforms where a subdomain is one person's site (jane.wordpress.com).
BLOG_HOSTS = _words("""
wordpress.com blogspot.com tumblr.com wixsite.com squarespace.com substack.com weebly.com github.io
medium.com typepad.com livejournal.com
""")
# A host label carrying one of these is a private practice site (janedoetherapy.com, markmorrislcsw.com).
PRACTICE_WORDS = (
    "therapy", "therapist", "counseling", "counselling", "counselor", "counsellor", "psychotherapy", "coaching",
    "lcsw", "lmft", "lpcc", "lpc", "lmhc", "psyd", "phd", "licsw",
)
# Path segments after which the next segment names a person. "/users/<handle>": whatever follows.
HANDLE_SEGMENTS = _words("u user users profile profiles author authors member members")
# "/therapists/<slug>" (counselchat.com): directories, where the next segment is a person only if it looks like one.
DIRECTORY_SEGMENTS = _words("""
therapists therapist counselors counselor counsellors people person staff team providers provider doctors
doctor clinicians clinician experts expert psychologists psychiatrists coaches bio
""")
PUBLIC_SECTOR_SUFFIXES = (".gov", ".edu", ".mil", ".int", ".gov.uk", ".nhs.uk", ".ac.uk", ".gc.ca")
SLUG_SPLIT = re.compile(r"[-_.+]")
PERSONAL_PAGE_SEGMENTS = _words("about-me aboutme my-story meet-me")


# ---------------------------------------------------------------- value checks

_NON_DIGIT = re.compile(r"\D")


def count_digits(text: str) -> int:
    return sum(map(text.count, "0123456789"))  # ten C-level scans: much faster than a regex or a loop


def luhn_ok(digits: str) -> bool:
    """True when a digit string passes the Luhn checksum used by payment cards."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def is_card_number(candidate: str) -> bool:
    """13-19 digits, a card-network first digit (2-6), not one repeated digit, and a valid Luhn checksum."""
    digits = _NON_DIGIT.sub("", candidate)
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and len(set(digits)) > 1 and luhn_ok(digits)


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def is_ipv6(candidate: str) -> bool:
    """A real IPv6 address (8 groups or a "::") with at least two groups and a digit: not "10:30:45", "a::b"."""
    if "::" not in candidate and candidate.count(":") != 7:
        return False
    enough = sum(1 for g in candidate.split(":") if g) >= 2 and any(c.isdigit() for c in candidate)
    return enough and is_ip(candidate)
