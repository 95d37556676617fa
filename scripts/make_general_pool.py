"""Generate ccsclip's shipped general description pool (src/ccsclip/profiles/pools/general.txt).

The pool describes what a real CLIP head may respond to: short captions a person could write of
a photo, each tagged with the concept(s) it names, so the offline `tags` judge can score heads.
Everything here (vocabularies, templates, hand-written lines) was written for this project; the
phrases are composed with a seeded RNG, so the output is byte-for-byte reproducible.

    python scripts/make_general_pool.py            # rewrite the shipped pool
    python scripts/make_general_pool.py --check    # exit 1 if the shipped pool is stale
    python scripts/make_general_pool.py --out X    # write elsewhere
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "src" / "ccsclip" / "profiles" / "pools" / "general.txt"
SEED = 2503_11103
SINGLES_PER_CONCEPT = 120
MIN_WORDS, MAX_WORDS = 2, 10

try:
    from ccsclip.profiles.rank.pool import normalise_key, write_pool
except ImportError:  # running from a checkout without an installed package
    sys.path.insert(0, str(ROOT / "src"))
    from ccsclip.profiles.rank.pool import normalise_key, write_pool


@dataclass(frozen=True)
class Cand:
    """One candidate line; `template` and `item` let the picker spread choices evenly."""

    text: str
    tags: tuple[str, ...]
    template: str
    item: str


# ---------------------------------------------------------------- grammar helpers

# fmt: off
# Vocabulary tables and template lists stay hand-wrapped, several entries a line.
_AN_EXCEPTIONS = ("uni", "use", "usu", "one", "eu", "ur", "ukulele")
_AN_SILENT_H = ("hour", "honest", "heir", "honour", "hdr")
_PLURALS = {
    "mouse": "mice", "goose": "geese", "sheep": "sheep", "deer": "deer", "fish": "fish",
    "moose": "moose", "bison": "bison", "wolf": "wolves", "knife": "knives", "leaf": "leaves",
    "shelf": "shelves", "tooth": "teeth", "foot": "feet", "person": "people", "child": "children",
    "woman": "women", "man": "men", "cactus": "cacti", "potato": "potatoes", "tomato": "tomatoes",
    "mango": "mangoes", "human": "humans", "volcano": "volcanoes", "hero": "heroes",
    "canoe": "canoes", "piano": "pianos", "radio": "radios", "photo": "photos",
    "dice": "dice", "octopus": "octopuses", "igloo": "igloos", "bus": "buses",
}


def an(phrase: str) -> str:
    """Indefinite article for a phrase (English spelling rules plus common exceptions)."""
    word = phrase.lower()
    if word.startswith(_AN_SILENT_H) or word.startswith("x-"):
        return f"an {phrase}"
    if word.startswith(_AN_EXCEPTIONS):
        return f"a {phrase}"
    return f"{'an' if word[0] in 'aeiou' else 'a'} {phrase}"


def plural(phrase: str) -> str:
    """Plural of a noun phrase (its last word)."""
    head, _, last = phrase.rpartition(" ")
    if last in _PLURALS:
        word = _PLURALS[last]
    elif last.endswith("man") and last != "human":
        word = last[:-3] + "men"
    elif last.endswith(("s", "x", "z", "ch", "sh")):
        word = last + "es"
    elif last.endswith("y") and last[-2:-1] not in ("a", "e", "i", "o", "u"):
        word = last[:-1] + "ies"
    else:
        word = last + "s"
    return f"{head} {word}".strip()


def grid(tag: str | tuple[str, ...], templates: Iterable[str], items: Iterable[str]) -> list[Cand]:
    """Every template filled with every item: {x} bare, {a_x} with article, {xs} plural."""
    tags = (tag,) if isinstance(tag, str) else tag
    items = list(items)
    out = []
    for template in templates:
        for item in items:
            text = template.format(x=item, a_x=an(item), xs=plural(item))
            out.append(Cand(text, tags, template, item))
    return out


def grid2(
    tags: tuple[str, ...], templates: Iterable[str], pairs: Iterable[tuple[str, str]]
) -> list[Cand]:
    """Two-slot templates: {x}/{a_x}/{xs} and {y}/{a_y}/{ys}; the item is the pair."""
    pairs = list(pairs)
    out = []
    for template in templates:
        for x, y in pairs:
            text = template.format(x=x, a_x=an(x), xs=plural(x), y=y, a_y=an(y), ys=plural(y))
            out.append(Cand(text, tags, template, f"{x}|{y}"))
    return out


def fixed(tag: str | tuple[str, ...], lines: Iterable[str]) -> list[Cand]:
    tags = (tag,) if isinstance(tag, str) else tag
    return [Cand(line, tags, f"fixed:{line}", line) for line in lines]


# ---------------------------------------------------------------- vocabularies

COLOURS = [
    "red", "blue", "green", "yellow", "orange", "purple", "pink", "brown", "black", "white",
    "grey", "teal", "turquoise", "magenta", "crimson", "scarlet", "navy blue", "sky blue",
    "lime green", "olive green", "emerald green", "gold", "silver", "beige", "maroon", "lavender",
    "violet", "indigo", "cyan", "coral", "peach", "mint green", "mustard yellow", "burgundy",
    "charcoal grey", "ivory", "tan", "amber", "fuchsia", "khaki",
]
BASIC_COLOURS = [
    "red", "blue", "green", "yellow", "orange", "purple", "pink", "brown", "black", "white",
    "grey", "silver",
]

COUNTRIES = [
    "Japan", "France", "Italy", "Brazil", "India", "Mexico", "Egypt", "Kenya", "Norway",
    "Iceland", "Peru", "Vietnam", "Morocco", "Greece", "Turkey", "Spain", "Portugal", "Thailand",
    "Australia", "New Zealand", "Canada", "Argentina", "Chile", "China", "South Korea",
    "Indonesia", "Nigeria", "Ethiopia", "Scotland", "Ireland", "Germany", "Poland", "Russia",
    "Cuba", "Jamaica", "Nepal", "Mongolia", "Tanzania", "Colombia", "the Philippines",
    "Switzerland", "the Netherlands", "Sweden", "Finland", "Senegal", "Madagascar",
]
CITIES = [
    "Paris", "Tokyo", "New York", "London", "Rome", "Istanbul", "Cairo", "Mumbai", "Bangkok",
    "Rio de Janeiro", "Mexico City", "Sydney", "Berlin", "Moscow", "Beijing", "Shanghai",
    "Seoul", "Hong Kong", "Singapore", "Dubai", "Marrakesh", "Lagos", "Nairobi", "Cape Town",
    "Buenos Aires", "Lima", "Havana", "Venice", "Amsterdam", "Barcelona", "Lisbon", "Prague",
    "Vienna", "Kyoto", "Hanoi", "Jakarta", "Delhi", "Kathmandu", "Reykjavik", "Stockholm",
    "San Francisco", "Chicago", "Los Angeles", "Toronto", "Vancouver", "Athens", "Jerusalem",
    "Edinburgh", "Dublin", "Copenhagen",
]
REGIONS = [
    "the Sahara", "Patagonia", "Siberia", "the Alps", "the Himalayas", "the Amazon",
    "Scandinavia", "the Middle East", "Southeast Asia", "Central America", "the Caribbean",
    "the Balkans", "the Andes", "the Mediterranean", "East Africa", "the Arctic",
    "Tuscany", "Provence", "Bavaria", "Andalusia", "the Scottish Highlands", "Texas",
    "California", "Alaska", "the Australian outback", "Antarctica",
]
LANDMARKS = [
    "the Eiffel Tower", "the Great Wall of China", "the Statue of Liberty", "the Colosseum",
    "the Taj Mahal", "the pyramids of Giza", "Machu Picchu", "the Golden Gate Bridge",
    "Big Ben", "the Sydney Opera House", "Mount Fuji", "the Leaning Tower of Pisa",
    "Stonehenge", "Angkor Wat", "the Acropolis", "Times Square", "the Brandenburg Gate",
    "Christ the Redeemer", "Petra", "the Kremlin", "Niagara Falls", "the Grand Canyon",
    "Table Mountain", "Uluru", "the Sagrada Familia", "Mount Kilimanjaro",
]

ANIMALS = [
    "dog", "cat", "horse", "cow", "pig", "sheep", "goat", "chicken", "duck", "goose", "rabbit",
    "hamster", "guinea pig", "parrot", "owl", "eagle", "hawk", "pigeon", "seagull", "penguin",
    "flamingo", "peacock", "swan", "hummingbird", "woodpecker", "crow", "lion", "tiger",
    "leopard", "cheetah", "jaguar", "elephant", "giraffe", "zebra", "rhino", "hippo", "gorilla",
    "chimpanzee", "orangutan", "monkey", "lemur", "kangaroo", "koala", "panda", "polar bear",
    "brown bear", "wolf", "fox", "deer", "moose", "bison", "camel", "llama", "alpaca",
    "raccoon", "squirrel", "hedgehog", "beaver", "otter", "badger", "bat", "mouse", "sloth",
    "armadillo", "crocodile", "alligator", "turtle", "tortoise", "lizard", "iguana",
    "chameleon", "snake", "frog", "toad", "salamander", "shark", "dolphin", "whale", "octopus",
    "jellyfish", "seal", "walrus", "crab", "starfish", "goldfish", "clownfish", "butterfly",
    "bee", "ant", "ladybug", "spider", "dragonfly", "snail", "beetle", "grasshopper",
    "scorpion", "donkey", "ostrich", "pelican", "toucan", "hyena", "meerkat",
]

PEOPLE = [
    "an elderly man", "an old woman", "a young man", "a young woman", "a little girl",
    "a little boy", "a teenage girl", "a teenage boy", "a baby", "a toddler",
    "a middle-aged man", "a middle-aged woman", "a grandmother", "a grandfather",
    "a mother and her child", "a father and his son", "a young couple", "an elderly couple",
    "a group of friends", "a crowd of people", "a family", "a brother and sister",
    "a bride and groom", "a group of students", "a group of children", "a man", "a woman",
    "a girl", "a boy", "a group of coworkers", "a group of tourists", "a mother with a stroller",
    "an old man with a cane", "a young family", "a retired couple", "a group of teenagers",
    "a college student", "a pair of best friends", "a father and daughter", "neighbours",
]

PROFESSIONS = [
    "doctor", "nurse", "firefighter", "police officer", "chef", "teacher", "farmer", "pilot",
    "astronaut", "mechanic", "carpenter", "electrician", "plumber", "lawyer", "judge",
    "scientist", "engineer", "architect", "dentist", "surgeon", "barber", "hairdresser",
    "baker", "butcher", "fisherman", "soldier", "sailor", "construction worker", "cashier",
    "waiter", "librarian", "journalist", "tailor", "welder", "miner", "lifeguard",
    "veterinarian", "pharmacist", "security guard", "mail carrier", "cleaner", "programmer",
    "accountant", "receptionist", "gardener", "paramedic", "blacksmith", "florist", "shepherd",
    "beekeeper", "lab technician", "flight attendant", "bus driver", "news anchor",
    "park ranger", "zookeeper",
]

OBJECTS = [
    "key", "lamp", "backpack", "wristwatch", "smartphone", "laptop", "hammer", "teapot",
    "candle", "wall clock", "wallet", "toothbrush", "pillow", "umbrella", "coffee mug",
    "kettle", "bucket", "broom", "ladder", "padlock", "flashlight", "screwdriver", "wrench",
    "stapler", "pencil", "notebook", "envelope", "suitcase", "basket", "vase", "mirror", "comb",
    "hairbrush", "remote control", "light bulb", "alarm clock", "calculator", "keyboard",
    "computer mouse", "television", "radio", "frying pan", "cooking pot", "spoon", "fork",
    "kitchen knife", "plate", "bowl", "cup", "bottle", "jar", "shopping bag", "trash can",
    "lighter", "watering can", "teddy bear", "toy robot", "rubber duck", "chair", "table",
    "sofa", "bed", "bookshelf", "desk", "stool", "towel", "blanket", "coat hanger", "thermos",
    "sewing machine", "typewriter", "globe", "hourglass", "compass", "magnifying glass",
    "tape measure", "paper clip", "sponge", "toaster", "blender", "vacuum cleaner",
    "electric fan", "book", "pair of scissors", "pair of glasses", "power drill", "doorknob",
]

SHAPES_2D = [
    "circle", "square", "triangle", "rectangle", "star", "hexagon", "spiral", "oval",
    "diamond", "cross", "arrow", "crescent", "pentagon", "octagon", "semicircle", "trapezoid",
    "rhombus", "parallelogram", "ellipse", "heart shape", "zigzag", "ring",
]
SHAPES_3D = ["cube", "sphere", "cone", "cylinder", "pyramid", "prism", "torus", "cuboid"]

LETTERS = list("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
WORDS = [
    "open", "stop", "exit", "love", "hello", "sale", "welcome", "danger", "closed", "coffee",
    "hope", "peace", "home", "sorry", "thank you", "push", "pull", "caution", "free", "help",
    "yes", "no", "dream", "enter", "quiet", "private", "happy birthday", "good morning",
]

NUMBER_WORDS = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen", "twenty", "fifty", "one hundred",
]
DIGITS = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
NUMERALS = DIGITS + [
    "10", "12", "13", "17", "21", "24", "30",
    "42", "55", "64", "77", "88", "99", "100", "101", "250", "365", "404", "500", "1000",
    "2024", "1999",
]
ROMAN = ["I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XII", "XX", "L", "C", "M"]
COUNT_WORDS = ["two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "twelve"]

TEXTURES = [
    "rough", "smooth", "fluffy", "bumpy", "grainy", "scaly", "wrinkled", "glossy", "cracked",
    "furry", "velvety", "slimy", "spiky", "woven", "ribbed", "porous", "crinkled", "fuzzy",
    "gritty", "silky", "pebbled", "corrugated", "dimpled", "frosted", "crumpled", "flaky",
    "rippled", "knobbly", "coarse", "quilted", "matte", "sticky", "waxy", "jagged", "pitted",
    "feathery", "spongy", "leathery", "stippled", "crusty", "powdery", "knitted", "bristly",
    "lumpy",
]

MATERIALS = [
    "wood", "metal", "glass", "plastic", "stone", "marble", "concrete", "brick", "leather",
    "cotton", "wool", "silk", "paper", "cardboard", "ceramic", "porcelain", "steel", "copper",
    "brass", "aluminium", "rubber", "cork", "bamboo", "granite", "clay", "linen", "denim",
    "velvet", "foam", "wax", "iron", "tin", "bronze", "wicker", "fibreglass", "resin", "plywood",
    "terracotta", "felt", "nylon", "slate", "sandstone", "carbon fibre", "canvas", "chrome",
    "stainless steel", "burlap", "polystyrene",
]

LANDFORMS = [
    "mountain peak", "forest", "waterfall", "lake", "river", "desert", "coastline", "valley",
    "canyon", "hillside", "volcano", "coral reef", "glacier", "meadow", "swamp", "cave",
    "sand dune", "rainforest", "sea cliff", "beach", "island", "prairie", "mountain range",
    "hot spring", "fjord", "tundra", "savanna", "marsh", "gorge", "lagoon", "oasis", "riverbank",
    "rocky shore", "wetland", "plateau", "ravine", "creek", "pond", "bay", "salt flat", "steppe",
    "jungle", "moorland", "delta", "atoll", "estuary", "highland", "mountain pass",
]
LAND_ADJECTIVES = [
    "remote", "vast", "wild", "rugged", "peaceful", "quiet", "untouched", "deep", "wide",
    "hidden", "beautiful", "distant", "rocky", "lush", "barren", "pristine", "sprawling",
]

BODY_SINGULAR = [
    "hand", "eye", "ear", "nose", "mouth", "foot", "knee", "elbow", "shoulder", "arm", "leg",
    "finger", "thumb", "tongue", "eyebrow", "forehead", "chin", "neck", "back", "belly",
    "wrist", "ankle", "palm", "heel", "cheek", "fist", "jaw", "hip", "big toe", "fingernail",
    "earlobe", "chest", "calf", "spine", "skull",
]
BODY_PLURAL = [
    "lips", "teeth", "toes", "freckles", "knuckles", "eyelashes", "muscles", "veins",
    "fingers", "feet", "hands", "shoulders",
]
BONES = ["hand", "foot", "knee", "skull", "spine", "jaw", "hip", "elbow", "wrist", "ankle", "chest"]

FOODS = [
    "a slice of pizza", "a cheeseburger", "sushi rolls", "a plate of spaghetti",
    "a bowl of ramen", "a croissant", "a chocolate cake", "a scoop of ice cream",
    "a grilled steak", "tacos", "a bowl of soup", "a stack of pancakes", "waffles with syrup",
    "an omelette", "a loaf of bread", "a wedge of cheese", "a bunch of grapes",
    "fresh strawberries", "a slice of watermelon", "a bar of chocolate",
    "chocolate chip cookies", "a glazed donut", "a club sandwich", "a hot dog",
    "a chicken curry", "steamed dumplings", "stir-fried noodles", "fried rice",
    "a roast chicken", "fish and chips", "a bowl of popcorn", "a cupcake", "an apple pie",
    "a bagel", "a blueberry muffin", "a ripe avocado", "sliced tomatoes", "a head of broccoli",
    "corn on the cob", "mashed potatoes", "fried eggs", "crispy bacon", "grilled sausages",
    "shrimp skewers", "a boiled lobster", "fresh oysters", "a kebab", "falafel",
    "a pan of paella", "a slice of lasagna", "a burrito", "a soft pretzel", "french macarons",
    "a bowl of cereal", "a fruit salad", "a bowl of oatmeal", "a baguette", "a cinnamon roll",
    "a bowl of chili", "a plate of nachos", "spring rolls", "a bento box", "a bowl of pho",
    "a tray of brownies", "a cheese platter", "a pot of stew", "grilled salmon",
    "a bowl of rice", "a lemon tart", "a pineapple", "a coconut", "a mango", "a kiwi cut in half",
    "roasted vegetables", "dim sum", "a bowl of hummus", "guacamole and chips", "a pork bun",
    "a bowl of miso soup", "a poached egg on toast", "a caesar salad", "a stack of toast",
]

VEHICLES = [
    "car", "bus", "truck", "bicycle", "motorcycle", "train", "airplane", "helicopter", "boat",
    "ship", "sailboat", "submarine", "tractor", "scooter", "van", "taxi", "ambulance",
    "fire truck", "police car", "tram", "subway train", "hot air balloon", "jet ski", "canoe",
    "kayak", "yacht", "cargo ship", "race car", "sports car", "pickup truck", "limousine",
    "school bus", "rickshaw", "forklift", "bulldozer", "excavator", "rocket", "space shuttle",
    "glider", "cable car", "snowmobile", "horse-drawn carriage", "camper van",
    "double-decker bus", "vintage car", "electric car", "freight train", "steam locomotive",
    "fighter jet", "seaplane", "ferry", "tugboat", "motorboat", "dump truck", "quad bike",
    "go-kart", "delivery van", "minivan", "garbage truck", "gondola", "tank", "tow truck",
]

ART_STYLES = [
    "watercolor painting", "oil painting", "pencil sketch", "charcoal drawing",
    "pixel art picture", "cartoon drawing", "anime illustration", "comic book panel", "mosaic",
    "graffiti mural", "abstract painting", "impressionist painting", "cubist painting",
    "pop art print", "ink drawing", "woodcut print", "linocut print", "collage",
    "clay sculpture", "3D render", "low poly render", "vector illustration", "child's drawing",
    "doodle", "caricature", "fresco", "pastel drawing", "still life painting",
    "surrealist painting", "ukiyo-e print", "art nouveau poster", "baroque painting",
    "renaissance painting", "minimalist artwork", "digital painting", "concept art sketch",
    "street art stencil", "pointillist painting", "acrylic painting", "gouache illustration",
    "etching", "tapestry", "chalk drawing", "paper cut-out artwork", "line drawing",
    "expressionist painting", "storybook illustration", "cave painting", "marble statue",
]
ART_SUBJECTS = [
    ("animal", ["fox", "horse", "cat", "owl", "whale", "tiger", "deer", "rabbit"]),
    ("vehicle", ["sailboat", "steam train", "bicycle", "vintage car", "ship", "biplane"]),
    ("people", ["old man", "young woman", "mother and child", "group of dancers"]),
    ("food", ["bowl of fruit", "loaf of bread", "basket of apples"]),
    ("architecture", ["cathedral", "lighthouse", "castle", "windmill"]),
    ("nature", ["mountain lake", "waterfall", "stormy sea", "desert landscape"]),
]

LIGHT_SCENES = [
    "an empty road", "a quiet street", "a small room", "an open field", "a rooftop",
    "a parking lot", "a hallway", "a kitchen table", "a city square", "a bedroom", "a porch",
    "a garden path", "an alleyway", "a staircase",
]
LIGHTS = [
    "at sunset", "at sunrise", "at dusk", "at dawn", "at night", "at midday",
    "in golden hour light", "under neon lights", "lit by candlelight", "lit by a single lamp",
    "in harsh sunlight", "in soft morning light", "in deep shadow", "in the blue hour",
    "under fluorescent lights", "under streetlights", "in the late afternoon sun",
    "in near darkness", "lit by a campfire", "with dramatic shadows", "in dappled light",
    "in warm evening light", "lit by moonlight", "under a spotlight", "in strong backlight",
]

WEATHER_SCENES = [
    "a street", "a town", "a city park", "a parking lot", "a village", "a harbour",
    "a playground", "a backyard", "a highway", "a train platform", "a rooftop terrace",
    "a football pitch",
]
WEATHERS = [
    "in heavy rain", "in the snow", "in thick fog", "during a thunderstorm", "in a blizzard",
    "under storm clouds", "after the rain", "covered in frost", "in a hailstorm",
    "on a windy day", "under grey skies", "in light drizzle", "in a heat wave",
    "in a sandstorm", "flooded after a storm", "under a clear sky", "in freezing fog",
    "in the mist", "during a hurricane", "after a snowfall", "in pouring rain",
    "on a humid day",
]

EMOTION_ADJ = [
    "happy", "sad", "angry", "scared", "surprised", "disgusted", "excited", "bored", "anxious",
    "calm", "proud", "embarrassed", "confused", "lonely", "joyful", "frustrated",
    "nervous", "relieved", "content", "hopeful", "jealous", "shy", "amused", "furious",
    "heartbroken", "terrified", "delighted", "worried", "ecstatic", "gloomy", "cheerful",
    "tense", "shocked", "melancholy", "grateful", "disappointed", "annoyed", "overjoyed",
    "hurt",
]
EMOTION_NOUN = [
    "joy", "sorrow", "anger", "fear", "surprise", "disgust", "relief", "pride", "shame",
    "grief", "excitement", "boredom", "anxiety", "love", "awe", "contempt", "nostalgia",
    "loneliness", "tenderness", "frustration", "despair", "happiness", "sadness", "rage",
    "panic", "delight", "jealousy", "gratitude", "hope", "regret",
]

BUILDINGS = [
    "gothic cathedral", "skyscraper", "brutalist building", "Victorian house",
    "glass office tower", "log cabin", "pagoda", "mosque", "Greek temple", "medieval castle",
    "lighthouse", "suspension bridge", "stone arch bridge", "domed building", "farmhouse",
    "barn", "igloo", "townhouse", "villa", "palace", "fortress", "windmill", "tiny house",
    "treehouse", "greenhouse", "art deco building", "bungalow", "chapel", "aqueduct",
    "apartment block", "terraced house", "cottage", "mansion", "church", "monastery",
    "observatory", "clock tower", "bell tower", "town hall", "opera house", "concrete bunker",
    "stilt house", "adobe house", "tea house", "geodesic dome", "pavilion", "amphitheatre",
    "railway station", "water tower",
]

TEAM_SPORTS = [
    "soccer", "basketball", "tennis", "baseball", "volleyball", "rugby", "american football",
    "ice hockey", "cricket", "table tennis", "badminton", "water polo", "handball", "squash",
    "lacrosse", "softball", "field hockey", "beach volleyball", "golf", "netball",
]
SOLO_SPORTS = [
    "swimming", "cycling", "skiing", "snowboarding", "surfing", "skateboarding", "boxing",
    "wrestling", "gymnastics", "rock climbing", "rowing", "fencing", "archery", "karate",
    "judo", "figure skating", "weightlifting", "sprinting", "diving", "kayaking", "long jump",
    "high jump", "pole vault", "marathon running", "mountain biking", "speed skating",
    "triathlon", "taekwondo", "show jumping", "bouldering",
]

INSTRUMENTS = [
    "guitar", "electric guitar", "acoustic guitar", "piano", "grand piano", "violin", "cello",
    "drum kit", "trumpet", "saxophone", "flute", "clarinet", "harp", "accordion", "banjo",
    "ukulele", "harmonica", "bass guitar", "synthesizer", "xylophone", "tuba", "trombone",
    "sitar", "double bass", "tambourine", "french horn", "oboe", "mandolin", "bongo drum",
    "djembe", "pipe organ", "electronic keyboard", "marimba", "bagpipe",
]
GENRES = [
    "rock", "jazz", "blues", "classical", "hip hop", "country", "punk", "reggae", "folk",
    "heavy metal", "pop", "electronic", "gospel", "salsa", "techno", "flamenco",
]

CLOTHES = [
    "t-shirt", "dress", "suit", "jacket", "sweater", "scarf", "hat", "coat", "hoodie", "skirt",
    "tie", "bow tie", "raincoat", "wedding dress", "kimono", "sari", "tuxedo", "swimsuit",
    "blazer", "vest", "beanie", "cardigan", "apron", "poncho", "trench coat", "turtleneck",
    "winter coat", "belt", "sun hat", "cowboy hat", "top hat", "polo shirt", "nightgown",
    "bathrobe", "evening gown", "school uniform", "parka", "tank top", "blouse", "kilt",
    "sundress", "sombrero", "headscarf", "dress shirt", "baseball cap",
]
CLOTHES_PAIRS = [
    "jeans", "boots", "sneakers", "sandals", "socks", "gloves", "shorts", "pyjamas",
    "overalls", "high heels", "trousers", "leggings", "mittens", "slippers", "flip-flops",
    "loafers", "hiking boots", "rain boots", "swimming trunks", "ballet shoes",
]

FLOWERS = [
    "sunflower", "rose", "tulip", "daisy", "orchid", "lily", "lotus flower", "dandelion",
    "poppy", "hydrangea", "magnolia", "bluebell", "daffodil", "iris", "peony", "carnation",
    "hibiscus", "marigold", "chrysanthemum", "water lily", "jasmine flower", "lilac",
    "foxglove", "camellia", "cornflower", "snowdrop",
]
TREES = [
    "oak tree", "pine tree", "palm tree", "maple tree", "birch tree", "willow tree",
    "bonsai tree", "redwood", "baobab tree", "olive tree", "apple tree", "cypress", "fir tree",
    "eucalyptus tree", "cedar tree", "banyan tree", "cherry tree", "spruce", "magnolia tree",
]
OTHER_PLANTS = [
    "cactus", "fern", "succulent", "ivy plant", "aloe vera plant", "venus flytrap", "mushroom",
    "four-leaf clover", "seedling", "houseplant", "monstera plant", "snake plant",
    "pitcher plant", "spider plant", "basil plant", "tomato plant", "grape vine",
    "bamboo shoot", "thistle", "rubber plant",
]

PHOTO_SUBJECTS = [
    "a street", "a room", "a backyard", "a parking lot", "a hallway", "a town square",
    "a playground", "a kitchen", "an office", "a rooftop", "a shop front", "a train platform",
]
PHOTO_STYLES = [
    "an aerial view of {x}", "a blurry photo of {x}", "a long exposure shot of {x}",
    "a black and white photo of {x}", "a fisheye photo of {x}", "a tilt-shift photo of {x}",
    "an overexposed photo of {x}", "a grainy film photo of {x}", "a wide-angle shot of {x}",
    "a low-resolution photo of {x}", "a security camera view of {x}", "a drone shot of {x}",
    "a polaroid of {x}", "a panoramic shot of {x}", "an out-of-focus photo of {x}",
    "a top-down view of {x}", "a photo of {x} with motion blur", "an infrared photo of {x}",
    "a sepia photo of {x}", "a double exposure of {x}", "a pixelated image of {x}",
    "a low angle shot of {x}", "an underexposed photo of {x}", "a timelapse frame of {x}",
]


# ---------------------------------------------------------------- single-concept lines


def colour_lines() -> list[Cand]:
    one = [
        "a solid {x} background", "the colour {x}", "different shades of {x}",
        "{a_x} colour swatch", "a wall painted {x}", "an image that is mostly {x}",
        "bright {x} tones", "a splash of {x} paint", "a photo with {a_x} tint", "vivid {x} hues",
        "pale {x} shades", "a deep {x} colour", "everything tinted {x}", "{a_x} paint sample",
    ]
    two = [
        "a gradient from {x} to {y}", "{a_x} and {y} colour scheme", "{x} next to {y}",
        "a blend of {x} and {y}", "{x} paint mixed with {y}",
    ]
    pairs = [(a, b) for a in COLOURS for b in COLOURS if a != b]
    hand = [
        "a colour wheel", "a palette of pastel colours", "a neon colour palette",
        "muted earth tones", "a monochrome image in blue", "a riot of bright colours",
        "a colour chart of paint samples", "warm colours only", "cool blue and green tones",
        "a black and white checker of colour", "faded washed-out colours",
        "primary colours side by side", "a pantone colour card", "colourful paint splatter",
        "highly saturated colours", "a desaturated colour palette",
    ]
    return fixed("colour", hand) + grid("colour", one, COLOURS) + grid2(("colour",), two, pairs)


def location_lines() -> list[Cand]:
    places = COUNTRIES + CITIES + REGIONS
    general = [
        "a photo taken in {x}", "a postcard from {x}", "travel photo from {x}",
        "somewhere in {x}", "a typical scene in {x}", "a souvenir photo from {x}",
    ]
    city = [
        "a street in {x}", "the skyline of {x}", "a market in {x}", "downtown {x}",
        "a neighbourhood in {x}", "the streets of {x}", "rush hour in {x}",
        "a tourist spot in {x}", "a back alley in {x}",
    ]
    country = [
        "a map of {x}", "a village in {x}", "the countryside of {x}", "the flag of {x}",
        "a small town in {x}", "a road trip through {x}",
    ]
    region = ["a journey across {x}", "a view of {x}", "a remote corner of {x}"]
    landmark = [
        "{x}", "tourists visiting {x}", "a photo of {x}", "{x} seen from afar",
        "a postcard of {x}",
    ]
    hand = [
        "a world map", "a globe showing Europe", "a street sign in a foreign city",
        "a busy international airport", "a crowded train station in Asia",
        "a souvenir shop in a tourist town", "a passport stamped at a border",
        "a road sign pointing to the capital", "a map of the world's continents",
        "a map with a pin on a city",
    ]
    return (
        fixed("location", hand)
        + grid("location", general, places)
        + grid("location", city, CITIES)
        + grid("location", country, COUNTRIES)
        + grid("location", region, REGIONS)
        + grid("location", landmark, LANDMARKS)
    )


def animal_lines() -> list[Cand]:
    templates = [
        "{a_x} in the wild", "close-up of {a_x}", "{a_x} looking at the camera",
        "a sleeping {x}", "a baby {x}", "{a_x} at the zoo", "a wild {x} resting",
        "{a_x} searching for food", "a young {x} exploring", "{a_x} standing still",
        "{a_x} eating", "a curious {x}", "a photo of {a_x}", "{a_x} in its habitat",
        "portrait of {a_x}",
    ]
    hand = [
        "a playful puppy", "a tiny kitten", "a flock of birds in flight", "a herd of cattle",
        "a school of fish", "a pack of wolves", "a swarm of bees", "a pride of lions",
        "a colony of penguins", "a litter of puppies", "a dog fetching a stick",
        "a cat napping in a sunbeam", "a horse galloping", "a bird perched on a branch",
        "a fish swimming in an aquarium", "a pet lizard in a terrarium",
    ]
    return fixed("animal", hand) + grid("animal", templates, ANIMALS)


def people_lines() -> list[Cand]:
    templates = [
        "portrait of {x}", "{x} walking down the street", "{x} sitting on a bench",
        "a candid photo of {x}", "{x} standing outside", "{x} waiting in line",
        "{x} posing for a photo", "{x} at home", "{x} in a park", "{x} crossing the road",
        "a snapshot of {x}", "{x} sitting at a table", "{x} looking out of a window",
        "{x} having a conversation",
    ]
    hand = [
        "portrait of a smiling woman", "a crowd in a city square", "a family photo",
        "a class photo of schoolchildren", "people on a busy sidewalk", "a group selfie",
        "a man and a woman shaking hands", "a mother holding her baby",
        "grandparents with their grandchildren", "a line of people waiting", "a wedding party",
        "a person seen from behind", "a couple holding hands", "an old man reading a newspaper",
        "a woman carrying shopping bags", "a boy riding on his father's shoulders",
        "strangers on a subway platform", "a group of people at a dinner party",
    ]
    return fixed("people", hand) + grid("people", templates, PEOPLE)


def profession_lines() -> list[Cand]:
    templates = [
        "{a_x} at work", "portrait of {a_x}", "{a_x} in uniform", "{a_x} on the job",
        "{a_x} taking a break", "a female {x}", "a male {x}", "an experienced {x}",
        "a team of {xs}", "{a_x} during a shift", "a day in the life of {a_x}",
        "a retired {x}", "an apprentice {x}", "{a_x} talking to a colleague",
    ]
    hand = [
        "a doctor with a stethoscope", "a chef tasting a sauce", "a firefighter holding a hose",
        "a teacher writing on the blackboard", "a farmer driving a tractor",
        "a pilot in the cockpit", "a mechanic under a car", "a nurse checking on a patient",
        "a judge in a courtroom", "a scientist looking into a microscope",
        "a construction worker in a hard hat", "a barber cutting hair",
        "a baker pulling bread from the oven", "a fisherman mending nets",
        "a surgeon in the operating room", "an office worker at a desk",
    ]
    return fixed("profession", hand) + grid("profession", templates, PROFESSIONS)


def object_lines() -> list[Cand]:
    templates = [
        "{a_x} on a table", "close-up of {a_x}", "{a_x} on a white background", "an old {x}",
        "a broken {x}", "{a_x} on a shelf", "a product photo of {a_x}", "a brand new {x}",
        "a used {x}", "{a_x} on the floor", "{a_x} for sale", "a worn-out {x}",
        "a photo of {a_x}", "{a_x} in a drawer", "an antique {x}",
    ]
    hand = [
        "household objects on a desk", "a cluttered kitchen drawer", "tools hanging on a wall",
        "a toolbox full of tools", "a desk with office supplies", "a set of keys on a ring",
        "a junk drawer", "everyday objects arranged neatly", "items spread out on a bed",
        "a shelf of knick-knacks", "a garage full of stuff", "a lost and found box",
    ]
    return fixed("object", hand) + grid("object", templates, OBJECTS)


def shape_lines() -> list[Cand]:
    flat = [
        "a simple {x}", "the outline of {a_x}", "a large {x}", "a pattern of small {xs}",
        "geometric {xs}", "a perfect {x}", "a hand-drawn {x}", "{a_x} on a plain background",
        "overlapping {xs}", "a row of {xs}", "a flat {x} icon", "{xs} of different sizes",
        "{a_x} made of dots", "a tiny {x}", "a symmetrical {x}",
    ]
    solid = [
        "a 3D {x}", "a wireframe {x}", "a solid {x}", "a rendered {x}", "{a_x} casting a shadow",
        "a stack of {xs}", "the net of {a_x}", "a floating {x}",
    ]
    nested = ["{a_x} inside {a_y}", "{a_x} next to {a_y}", "{a_x} overlapping {a_y}"]
    pairs = [(a, b) for a in SHAPES_2D for b in SHAPES_2D if a != b]
    hand = [
        "concentric circles", "wavy lines", "parallel lines", "a zigzag line",
        "a grid of squares", "a checkerboard pattern", "a polka dot pattern",
        "intersecting lines", "a tessellation of hexagons", "a heart drawn in the sand",
        "a star outline", "a mandala of geometric shapes", "basic geometric shapes",
        "a circle and a square", "shapes cut out of paper", "a spiral pattern",
        "a chevron pattern", "a diagonal stripe pattern",
    ]
    return (
        fixed("shape", hand)
        + grid("shape", flat, SHAPES_2D)
        + grid("shape", solid, SHAPES_3D)
        + grid2(("shape",), nested, pairs)
    )


def text_lines() -> list[Cand]:
    letter = [
        "the letter {x}", "a capital letter {x}", "the letter {x} in bold",
        "the letter {x} in cursive", "a large letter {x}", "a stencilled letter {x}",
        "the letter {x} in a serif font",
    ]
    word = [
        "a sign that says {x}", "the word {x} in chalk", "graffiti of the word {x}",
        "a neon sign reading {x}", "the word {x} in big letters",
        "a handwritten note saying {x}", "the word {x} typed on paper", "a banner reading {x}",
        "the word {x} spelled out in magnets", 'the word "{x}" printed on a card',
    ]
    lower = grid("text", ["a lowercase letter {x}", "a handwritten letter {x}"],
                 [c.lower() for c in LETTERS])
    hand = [
        "a page of printed text", "a handwritten letter", "a newspaper headline",
        "subtitles at the bottom of a screen", "a menu written on a chalkboard",
        "the alphabet in block letters", "a word in cursive handwriting",
        "a receipt with printed text", "a book cover with a big title",
        "text in Chinese characters", "Arabic calligraphy", "Japanese kanji on a sign",
        "Cyrillic letters on a poster", "Greek letters on a blackboard", "a typewritten page",
        "a paragraph of small text", "a street name sign", "a road sign with directions",
        "a label with tiny print", "a sticky note with writing", "a scrabble board with words",
        "alphabet blocks spelling a name", "a poster full of text", "a page from a dictionary",
        "an open book showing text", "a shop sign with lettering", "a logo made of letters",
        "an email on a screen", "a text message on a phone", "a crossword puzzle",
        "a chalkboard covered in writing", "a warning label", "a handwritten shopping list",
        "an old manuscript", "a signature in ink", "embossed lettering", "a movie title card",
        "a birthday card with a message", "an ancient stone inscription",
        "egyptian hieroglyphs", "braille text", "a name tag", "comic speech bubbles with text",
    ]
    return (
        fixed("text", hand) + grid("text", letter, LETTERS) + lower + grid("text", word, WORDS)
    )


def number_lines() -> list[Cand]:
    spelled = ["the number {x}", "the number {x} written out", "a sign with the number {x}"]
    dice = ["a die showing {x}", "a domino with {x} dots"]
    digit = ["the digit {x}", "a seven-segment display showing {x}"]
    digits = [
        "the number {x} painted on a door", "house number {x}",
        "a large number {x} on a wall", "a price tag showing {x}", "a countdown timer at {x}",
        "a calendar page for day {x}", "a stencilled number {x}", "the number {x} in neon",
        "a ticket with the number {x}", "page number {x}", "a room number {x} on a door",
        "an odometer reading {x}",
    ]
    roman = ["roman numeral {x}", "the roman numeral {x} carved in stone"]
    hand = [
        "a page of arithmetic problems", "counting on an abacus", "a tally of five marks",
        "a row of numbered lockers", "a sudoku puzzle", "a multiplication table",
        "a spreadsheet full of numbers", "a stopwatch reading zero", "a numbered list",
        "a lottery ticket with numbers", "a digital clock reading 12:45",
        "an analog clock at three o'clock", "a thermometer reading 37 degrees",
        "the numbers one to ten", "a countdown from ten to zero", "a bingo card",
        "odd and even numbers", "a math equation on a whiteboard", "binary code ones and zeros",
        "a barcode with numbers", "a phone number on a sign", "a page of statistics",
        "numbers on a calculator display", "a list of prices", "a number line from 0 to 10",
        "a pie chart with percentages",
    ]
    return (
        fixed("number", hand)
        + grid("number", spelled, NUMBER_WORDS)
        + grid("number", dice, NUMBER_WORDS[1:7])
        + grid("number", digit, DIGITS)
        + grid("number", digits, NUMERALS)
        + grid("number", roman, ROMAN)
    )


def texture_lines() -> list[Cand]:
    one = [
        "{a_x} texture", "close-up of {a_x} surface", "{a_x} surface up close",
        "a seamless {x} texture", "a detailed {x} texture", "a very {x} surface",
        "a background with {a_x} texture", "the {x} texture of a wall", "{a_x} finish",
        "{a_x} pattern up close",
    ]
    two = ["{a_x} and {y} surface", "a surface both {x} and {y}"]
    pairs = [(a, b) for a in TEXTURES for b in TEXTURES if a != b]
    hand = [
        "peeling paint on an old wall", "a honeycomb texture", "the surface of sandpaper",
        "bubble wrap up close", "crackled glaze on pottery", "frost crystals on a window",
        "ripples in the sand", "a cobblestone texture", "the weave of a basket",
        "fabric texture up close", "a rough plaster wall", "rusty flaking metal",
        "the surface of an orange peel", "a hammered metal texture", "tiny bumps on a surface",
        "a wrinkled paper texture",
    ]
    return fixed("texture", hand) + grid("texture", one, TEXTURES) + grid2(("texture",), two, pairs)


def material_lines() -> list[Cand]:
    one = [
        "a piece of {x}", "a sample of {x}", "scraps of {x}", "a surface made of {x}",
        "raw {x} in a workshop", "a close-up of {x}", "polished {x}", "weathered {x}",
        "a pile of {x}", "offcuts of {x}", "{x} as a building material",
        "something made entirely of {x}", "recycled {x}", "{a_x} panel",
    ]
    two = ["samples of {x} and {y}", "{x} and {y} side by side", "a mix of {x} and {y}"]
    pairs = [(a, b) for a in MATERIALS for b in MATERIALS if a != b]
    hand = [
        "a lumber yard full of planks", "sheets of corrugated iron", "a spool of copper wire",
        "bolts of fabric in a shop", "a slab of white marble", "a ball of yarn",
        "molten glass", "a stack of timber", "a roll of aluminium foil", "a bale of cotton",
        "a block of ice", "a heap of scrap metal", "a bag of cement", "a sheet of plywood",
        "a lump of clay", "a stack of bricks",
    ]
    return (
        fixed("material", hand)
        + grid("material", one, MATERIALS)
        + grid2(("material",), two, pairs)
    )


def nature_lines() -> list[Cand]:
    one = [
        "a view of {a_x}", "landscape with {a_x}", "{a_x} far from any town",
        "the edge of {a_x}", "{a_x} in the wilderness", "untouched nature around {a_x}",
        "{a_x} seen from a hilltop", "a hiking trail to {a_x}",
    ]
    adj = ["{a_x} {y}"]
    pairs = [(a, b) for a in LAND_ADJECTIVES for b in LANDFORMS]
    hand = [
        "snowy mountain peak", "rolling green hills", "a waterfall in the jungle",
        "the ocean horizon", "waves crashing on rocks", "a stream running over stones",
        "dramatic sea cliffs", "a dry riverbed", "a wide open plain", "red rock formations",
        "a starry night sky", "the surface of the sea", "a rocky mountain trail",
        "a beach with white sand", "a natural rock arch", "a crater lake",
        "a river winding through a valley", "the edge of a cliff", "a cave entrance",
        "a desert landscape",
    ]
    return fixed("nature", hand) + grid("nature", one, LANDFORMS) + grid2(("nature",), adj, pairs)


def body_lines() -> list[Cand]:
    one = [
        "close-up of a human {x}", "a person's {x}", "a bandaged {x}", "the {x} of a child",
        "a detailed view of {a_x}", "a bruised {x}", "someone pointing at their {x}",
        "{a_x} with a small scar", "a model of the human {x}",
    ]
    many = ["close-up of human {x}", "a child's {x}", "a person's {x}", "an old person's {x}"]
    xray = ["an x-ray of {a_x}", "a medical scan of {a_x}"]
    hand = [
        "a pair of hands", "an open palm", "a clenched fist", "bare feet on the floor",
        "a flexed bicep", "a human skeleton", "an anatomy model of the heart", "a brain scan",
        "a hand giving a thumbs up", "fingers making a peace sign", "a face in profile",
        "wrinkled hands", "a baby's tiny feet", "a muscular back", "a pregnant belly",
        "a hand holding another hand", "a close-up of an eye", "a row of teeth",
        "a hand with painted nails", "a stubbly chin",
    ]
    return (
        fixed("body", hand)
        + grid("body", one, BODY_SINGULAR)
        + grid("body", many, BODY_PLURAL)
        + grid("body", xray, BONES)
    )


def food_lines() -> list[Cand]:
    templates = [
        "{x}", "a photo of {x}", "close-up of {x}", "{x} on the kitchen counter",
        "{x} ready to eat", "a table with {x}", "{x} served for dinner", "{x} for lunch",
        "{x} at a food stall", "{x} in a lunch box", "{x} at a picnic",
        "a restaurant serving {x}", "{x} just made",
    ]
    hand = [
        "a buffet of dishes", "a farmers market stall of vegetables",
        "a fridge full of food", "a breakfast spread", "a home-cooked meal",
        "a plate of food from above", "street food at a night market", "a pot boiling on a stove",
        "ingredients laid out for a recipe", "a birthday cake with candles",
        "a dinner table set for a feast",
    ]
    return fixed("food", hand) + grid("food", templates, FOODS)


def vehicle_lines() -> list[Cand]:
    templates = [
        "a parked {x}", "an old {x}", "a brand new {x}", "a rusty {x}", "the front of {a_x}",
        "{a_x} in the distance", "{a_x} on the move", "{a_x} waiting to leave",
        "a broken-down {x}", "{a_x} with its lights on", "a photo of {a_x}",
        "an abandoned {x}", "a fleet of {xs}", "{a_x} being repaired", "{a_x} for hire",
    ]
    hand = [
        "traffic on a highway", "a traffic jam", "cars at a red light", "a busy car park",
        "an airport runway with planes", "a marina full of boats", "a train pulling into a station",
        "a motorbike speeding past", "a bicycle leaning on a wall", "a car dashboard",
        "a row of parked cars", "a container ship at sea", "boats in a harbour",
        "a plane taking off", "a used car lot",
    ]
    return fixed("vehicle", hand) + grid("vehicle", templates, VEHICLES)


def art_lines() -> list[Cand]:
    templates = [
        "{a_x}", "a framed {x}", "{a_x} hanging in a gallery", "a detailed {x}",
        "an unfinished {x}", "{a_x} by an unknown artist", "a famous {x}", "an amateur {x}",
        "a large {x} on a wall", "{a_x} in a museum", "a colourless {x}", "a small {x}",
    ]
    hand = [
        "a museum gallery of paintings", "an artist's easel and palette",
        "brush strokes on canvas", "a sculpture garden", "an art exhibition opening",
        "an artist painting a canvas", "sketches pinned to a wall", "a paint palette",
        "an art studio", "a portrait painting in a gold frame",
        "an abstract splash of paint", "a painting in the style of the old masters",
    ]
    return fixed("art", hand) + grid("art", templates, ART_STYLES)


def lighting_lines() -> list[Cand]:
    hand = [
        "the sun setting on the horizon", "bright midday sun", "long shadows in the evening",
        "light streaming through a window", "a silhouette against a bright sky",
        "warm evening glow", "dim candlelight", "a neon glow in the dark",
        "rays of light through a doorway", "a pitch black room", "a single light bulb in the dark",
        "harsh flash lighting", "soft diffused light", "sunlight on a wooden floor",
        "the glow of a screen in the dark", "fairy lights at night", "a lamp-lit room at night",
        "a twilight sky", "light and shadow on a wall", "strong backlighting",
        "golden hour glow", "a dark alley at midnight", "headlights in the dark",
        "sunrise over the rooftops", "blinding sunlight", "a room lit only by a fireplace",
        "the first light of morning", "red light from a darkroom lamp",
    ]
    return (
        fixed("lighting", hand)
        + grid2(("lighting",), ["{x} {y}"], [(s, light) for s in LIGHT_SCENES for light in LIGHTS])
        + grid("lighting", ["a photo taken {x}", "everything {x}"], [
            light for light in LIGHTS if light.startswith(("at ", "in ", "under "))
        ])
    )


def weather_lines() -> list[Cand]:
    days = [
        "a rainy day", "a snowy day", "a foggy day", "a windy day", "a stormy day",
        "a cloudy day", "a sunny day", "an overcast day", "a misty morning", "a humid afternoon",
        "a freezing winter day", "a drizzly evening", "a grey afternoon", "a hot summer day",
        "a chilly autumn morning", "a muggy summer night",
    ]
    hand = [
        "dark storm clouds", "lightning striking at night", "a rainbow after the rain",
        "raindrops on a window", "snow falling at night", "thick fog", "a tornado touching down",
        "hailstones on the ground", "a weather radar map", "puddles after a downpour",
        "icicles hanging from a roof", "wind blowing trees sideways", "a hurricane from space",
        "frost on a windshield", "umbrellas in the rain", "a snowstorm", "heavy rain",
        "a sky with no clouds", "a foggy morning", "storm waves", "a lightning bolt",
        "dew on grass in the morning", "a snowflake up close", "a flooded street",
        "slush on the pavement", "a weather forecast map", "hazy sky from wildfire smoke",
        "clouds rolling in before a storm",
    ]
    return (
        fixed("weather", hand + days)
        + grid2(("weather",), ["{x} {y}"], [(s, w) for s in WEATHER_SCENES for w in WEATHERS])
    )


def emotion_lines() -> list[Cand]:
    adj = [
        "{a_x} expression", "{a_x} face", "someone looking {x}", "a person feeling {x}",
        "{a_x} mood", "{a_x} look", "{a_x} reaction",
        "a face that looks {x}",
    ]
    noun = [
        "an expression of {x}", "a face full of {x}", "a moment of pure {x}",
        "overwhelmed with {x}", "a feeling of {x}", "eyes full of {x}", "a look of {x}",
    ]
    hand = [
        "tears of joy", "a scream of terror", "laughing out loud", "crying uncontrollably",
        "a heartfelt reunion", "a sulking face", "a big grin", "a worried frown",
        "rolling eyes in annoyance", "a sigh of relief", "jumping for joy",
        "head in hands in despair", "a nervous smile", "a furious shout",
        "blushing with embarrassment", "a proud smile", "a bored yawn", "a tearful goodbye",
        "wide eyes in shock", "a gentle loving smile", "trembling with fear",
        "a triumphant cheer",
    ]
    return (
        fixed("emotion", hand)
        + grid("emotion", adj, EMOTION_ADJ)
        + grid("emotion", noun, EMOTION_NOUN)
    )


def architecture_lines() -> list[Cand]:
    templates = [
        "{a_x}", "the facade of {a_x}", "the interior of {a_x}", "an old {x}",
        "{a_x} under construction", "a restored {x}", "an abandoned {x}", "the roof of {a_x}",
        "the entrance of {a_x}", "the architecture of {a_x}", "a historic {x}",
        "an architectural model of {a_x}", "the floor plan of {a_x}", "a modern {x}",
    ]
    hand = [
        "gothic architecture", "baroque architecture", "modernist architecture",
        "brutalist concrete architecture", "a vaulted ceiling", "a spiral staircase",
        "a stained glass window", "ornate columns", "a grand staircase",
        "a row of terraced houses", "an arched doorway", "a courtyard with arches",
        "a building facade with balconies", "a city skyline of skyscrapers",
        "an architectural blueprint", "a timber-framed house", "a flying buttress",
        "a glass atrium", "a colonnade of marble pillars", "ancient stone ruins",
    ]
    return (
        fixed("architecture", hand)
        + grid("architecture", templates, BUILDINGS)
    )


def sport_lines() -> list[Cand]:
    team = [
        "{a_x} match", "people playing {x}", "{a_x} player in action", "{x} practice",
        "{a_x} tournament", "professional {x}", "{a_x} championship final",
        "kids learning {x}", "{a_x} game in progress", "an amateur {x} game",
        "{x} fans in the stands",
    ]
    solo = [
        "{a_x} competition", "{x} training", "an athlete practising {x}", "{a_x} champion",
        "{a_x} event", "{x} at the olympics", "a beginner trying {x}", "{a_x} lesson",
    ]
    hand = [
        "a soccer ball on grass", "a tennis racket and ball", "a pair of boxing gloves",
        "a basketball hoop", "a golf club and ball", "a pair of ice skates",
        "a surfboard on the sand", "a baseball bat", "a hockey stick and puck",
        "a set of dumbbells", "a bowling ball and pins", "a skateboard", "a ski lift",
        "a finish line", "a running track", "a football stadium", "a swimming pool with lanes",
        "a tennis court", "a golf course", "a boxing ring", "a gym full of equipment",
        "a referee blowing a whistle", "a goalkeeper diving", "a slam dunk", "a penalty kick",
        "a medal ceremony", "a trophy", "a team huddle",
    ]
    return (
        fixed("sport", hand) + grid("sport", team, TEAM_SPORTS) + grid("sport", solo, SOLO_SPORTS)
    )


def music_lines() -> list[Cand]:
    inst = [
        "a person playing the {x}", "{a_x} on stage", "an old {x}", "close-up of {a_x}",
        "{a_x} lesson", "{a_x} player", "{a_x} solo", "{a_x} in a music shop", "a vintage {x}",
        "{a_x} resting on a stand", "a child learning the {x}", "a street musician with {a_x}",
    ]
    genre = [
        "{a_x} concert", "{a_x} band performing", "{a_x} music festival",
        "{x} musicians on stage", "{a_x} record",
    ]
    hand = [
        "an orchestra performing", "a choir singing", "a DJ at a club",
        "sheet music on a stand", "a singer with a microphone", "a string quartet",
        "a street musician", "a vinyl record on a turntable", "a recording studio",
        "an opera singer on stage", "a marching band", "a music festival crowd",
        "a conductor with a baton", "musical notes on a staff", "a guitar amplifier",
        "a karaoke night", "a busker playing for coins", "a concert hall", "a jam session",
        "a rapper on stage", "a drummer mid-solo", "a cassette tape", "a metronome",
        "a boombox", "a piano recital",
    ]
    return fixed("music", hand) + grid("music", inst, INSTRUMENTS) + grid("music", genre, GENRES)


def clothing_lines() -> list[Cand]:
    one = [
        "{a_x} on a hanger", "a person wearing {a_x}", "a folded {x}",
        "{a_x} in a shop window", "a stylish {x}", "a vintage {x}", "{a_x} laid flat",
        "{a_x} for sale", "a secondhand {x}", "a handmade {x}", "{a_x} on a mannequin",
    ]
    two = [
        "a pair of {x}", "{x} on a shop shelf", "someone wearing {x}", "a worn pair of {x}",
        "new {x} in a box", "{x} by the door",
    ]
    hand = [
        "a closet full of clothes", "a pile of laundry", "a fashion show runway",
        "a rack of dresses", "a traditional costume", "an outfit laid out on a bed",
        "clothes hanging on a washing line", "a folded stack of shirts", "a shoe shop display",
        "a formal outfit", "a casual outfit", "a costume party outfit",
    ]
    return (
        fixed("clothing", hand)
        + grid("clothing", one, CLOTHES)
        + grid("clothing", two, CLOTHES_PAIRS)
    )


def plant_lines() -> list[Cand]:
    flower = [
        "{a_x} in bloom", "a close-up of {a_x}", "a single {x}", "a wilted {x}",
        "a bouquet of {xs}", "a field of {xs}", "{a_x} in a garden", "a dried {x}",
        "the petals of {a_x}", "a wild {x}",
    ]
    tree = [
        "{a_x} in a field", "the leaves of {a_x}", "an old {x}", "a young {x}",
        "{a_x} losing its leaves", "the trunk of {a_x}", "a row of {xs}", "a lone {x}",
        "the branches of {a_x}",
    ]
    other = [
        "a potted {x}", "a close-up of {a_x}", "{a_x} on a windowsill",
        "{a_x} growing outdoors", "a young {x}", "the leaves of {a_x}", "{a_x} in a pot",
    ]
    hand = [
        "a vegetable garden", "moss growing on a rock", "a pile of autumn leaves",
        "a hedge of flowering shrubs", "a greenhouse full of plants", "seeds sprouting in soil",
        "a garden in full bloom", "a wreath of green leaves", "a flower bed", "a pine cone",
        "a leaf with water droplets", "a vine climbing a wall",
    ]
    return (
        fixed("plant", hand)
        + grid("plant", flower, FLOWERS)
        + grid("plant", tree, TREES)
        + grid("plant", other, OTHER_PLANTS)
    )


def photography_lines() -> list[Cand]:
    hand = [
        "a selfie", "a blurry photo", "a macro shot", "a long exposure photo",
        "a black and white photo", "an overexposed photo", "an underexposed photo",
        "a photo with shallow depth of field", "a bokeh background", "a photo with lens flare",
        "a vintage sepia photo", "an HDR photo", "an infrared photo", "a security camera still",
        "a night vision image", "a screenshot", "a low resolution image", "a pixelated image",
        "a photo with compression artifacts", "a noisy high ISO photo",
        "a studio shot on a white background", "a badly cropped photo",
        "a photo taken through a dirty window", "a symmetrical composition", "a tilted horizon",
        "a photo with a vignette", "a film negative", "a contact sheet of photos",
        "an extreme close-up", "a wide establishing shot", "a point of view shot",
        "a dutch angle shot", "a soft focus photo", "a thermal camera image",
        "a disposable camera snapshot", "an instant photo with a white border",
    ]
    return fixed("photography", hand) + grid("photography", PHOTO_STYLES, PHOTO_SUBJECTS)


CONCEPTS = {
    "colour": colour_lines, "location": location_lines, "animal": animal_lines,
    "people": people_lines, "object": object_lines, "shape": shape_lines, "text": text_lines,
    "number": number_lines, "texture": texture_lines, "material": material_lines,
    "nature": nature_lines, "body": body_lines, "profession": profession_lines,
    "food": food_lines, "vehicle": vehicle_lines, "art": art_lines, "lighting": lighting_lines,
    "weather": weather_lines, "emotion": emotion_lines, "architecture": architecture_lines,
    "sport": sport_lines, "music": music_lines, "clothing": clothing_lines, "plant": plant_lines,
    "photography": photography_lines,
}


# ---------------------------------------------------------------- two-concept lines


def _pairs_of(xs: Sequence[str], ys: Sequence[str]) -> list[tuple[str, str]]:
    return [(x, y) for x in xs for y in ys]


def pair_groups(rng: random.Random) -> Iterator[tuple[list[Cand], int]]:
    """(candidates, how many to take) for lines that truly name two concepts."""
    road = ["car", "bus", "truck", "motorcycle", "scooter", "van", "taxi", "sports car",
            "pickup truck", "school bus", "vintage car", "electric car", "minivan", "tractor"]
    others = ["bicycle", "boat", "sailboat", "helicopter", "airplane", "tram", "canoe", "yacht"]
    cv = [
        *grid2(("colour", "vehicle"), ["{a_x} {y}"], _pairs_of(BASIC_COLOURS, road + others)),
        *grid2(("colour", "vehicle"), ["{a_x} {y} on the street", "{a_x} {y} in traffic"],
               _pairs_of(BASIC_COLOURS, road)),
    ]
    yield cv, 14
    cc = ["{a_x} {y}", "someone in {a_x} {y}"]
    yield grid2(("clothing", "colour"), cc, _pairs_of(BASIC_COLOURS, CLOTHES)), 14
    yield grid2(("colour", "object"), ["{a_x} {y}"], _pairs_of(BASIC_COLOURS, OBJECTS)), 12
    cs = ["{a_x} {y}", "{a_x} {y} on a plain background"]
    yield grid2(("colour", "shape"), cs, _pairs_of(BASIC_COLOURS, SHAPES_2D)), 12
    yield fixed(("animal", "colour"), [
        "a black cat", "a white horse", "a brown bear cub", "a green frog", "a yellow canary",
        "a pink flamingo", "a red fox in the snow", "a grey elephant", "a black and white cow",
        "an orange tabby cat", "a blue butterfly", "a white swan", "a red cardinal",
        "a black panther", "a green parrot", "a golden retriever",
    ]), 12
    yield fixed(("colour", "plant"), [
        "a red rose", "a yellow tulip", "a white lily", "a pink orchid", "a purple iris",
        "a blue hydrangea", "an orange marigold", "white daisies", "red poppies",
        "purple lavender fields", "autumn leaves in red and orange", "a bright green fern",
    ]), 10
    yield fixed(("colour", "food"), [
        "a photo of a red apple", "a red apple", "a green apple", "yellow bananas",
        "a purple eggplant", "red chili peppers", "orange carrots", "a bowl of green peas",
        "pink frosting on a cake",
    ]), 8
    yield fixed(("body", "colour"), [
        "bright blue eyes", "green eyes up close", "red lipstick on lips", "dyed pink hair",
        "a head of bright red hair", "brown eyes close-up", "grey hair", "blue painted nails",
    ]), 8

    count = ["{x} {ys}", "exactly {x} {ys}", "a group of {x} {ys}", "{x} {ys} in a row",
             "{x} {ys} side by side"]
    things = ["{x} {ys}", "exactly {x} {ys}", "{x} {ys} in a row", "{x} {ys} on a table",
              "a set of {x} {ys}"]
    animals = ["dog", "cat", "duck", "horse", "cow", "sheep", "bird", "goat", "penguin", "puppy"]
    foods = ["apple", "egg", "orange", "banana", "cupcake", "cookie", "lemon", "tomato", "donut"]
    objects = ["candle", "key", "mug", "book", "bottle", "cup", "pencil", "spoon", "lamp"]
    vehicles = ["car", "bicycle", "boat", "bus", "motorcycle", "truck", "airplane"]
    yield grid2(("animal", "number"), count, _pairs_of(COUNT_WORDS, animals)), 14
    yield grid2(("food", "number"), things, _pairs_of(COUNT_WORDS, foods)), 12
    yield grid2(("number", "object"), things, _pairs_of(COUNT_WORDS, objects)), 12
    yield grid2(("number", "vehicle"), count, _pairs_of(COUNT_WORDS, vehicles)), 10
    people = ["people", "children", "women", "men", "friends", "students"]
    yield grid2(
        ("number", "people"), ["{x} {y}", "a group of {x} {y}", "{x} {y} standing together"],
        _pairs_of(COUNT_WORDS, people),
    ), 10

    yield fixed(("material", "object"), [
        "a wooden spoon", "a wooden chair", "a glass vase", "a glass bottle", "a leather wallet",
        "a leather armchair", "a ceramic mug", "a ceramic bowl", "a metal bucket",
        "a plastic bottle", "a stone bench", "a marble table", "a wicker basket",
        "a bamboo cutting board", "a rubber ball", "a copper kettle", "a brass doorknob",
        "a steel toolbox", "a cast iron pan", "a paper bag", "a cardboard box", "a porcelain cup",
        "a silk pillow", "a woollen blanket", "a clay pot", "a velvet sofa", "a crystal glass",
        "a tin can", "a concrete planter", "a plastic chair",
    ]), 24
    yield fixed(("texture", "animal"), [
        "the scaly skin of a snake", "a fluffy kitten", "the rough hide of an elephant",
        "the soft fur of a rabbit", "the spiky back of a hedgehog",
        "the bumpy skin of a toad", "feathers of a bird up close",
    ]), 7
    yield fixed(("food", "texture"), [
        "a fuzzy peach", "the crusty surface of bread", "the bumpy skin of an orange",
        "the smooth skin of a tomato", "a crumbly slice of cake",
    ]), 5
    yield fixed(("plant", "texture"), [
        "the rough bark of an oak tree", "the waxy surface of a leaf",
        "a fuzzy moss texture", "the spiky surface of a cactus",
    ]), 4
    yield fixed(("clothing", "texture"), [
        "a chunky knitted sweater", "a crinkled linen shirt", "a quilted jacket",
        "a fluffy fleece jacket",
    ]), 4

    weathers = ["in a blizzard", "in thick fog", "under storm clouds", "in heavy rain",
                "after a snowfall", "covered in mist", "during a thunderstorm"]
    lands = ["a mountain range", "a forest", "a lake", "a valley", "a beach", "a desert",
             "a meadow", "a waterfall", "a canyon", "a rocky coast"]
    yield grid2(("nature", "weather"), ["{x} {y}"], _pairs_of(lands, weathers)), 24
    lights = ["at sunrise", "at sunset", "at dusk", "under moonlight", "in golden hour light"]
    yield grid2(("lighting", "nature"), ["{x} {y}"], _pairs_of(lands, lights)), 14
    blds = ["a cathedral", "a lighthouse", "a castle", "a skyscraper", "a temple", "a barn",
            "a stone bridge", "an old church"]
    arch_lights = lights + ["at night", "lit up by floodlights"]
    yield grid2(("architecture", "lighting"), ["{x} {y}"], _pairs_of(blds, arch_lights)), 14

    art_pairs: list[Cand] = []
    for concept, subjects in ART_SUBJECTS:
        tags = tuple(sorted(("art", concept)))
        styles = ["watercolor painting", "oil painting", "pencil sketch", "cartoon drawing",
                  "mosaic", "linocut print", "charcoal drawing", "pixel art picture"]
        art_pairs += grid2(tags, ["{a_x} of {a_y}"], _pairs_of(styles, subjects))
    yield art_pairs, 36

    yield fixed(("architecture", "location"), [
        "a temple in Kyoto", "a mosque in Istanbul", "a cathedral in Barcelona",
        "a skyscraper in Dubai", "a castle in Scotland", "a windmill in the Netherlands",
        "a pagoda in Vietnam", "a palace in Rajasthan", "a chalet in Switzerland",
        "canal houses in Amsterdam", "a church in Iceland", "a brownstone in New York",
        "a riad in Marrakesh", "a wooden church in Norway", "an adobe house in New Mexico",
    ]), 15
    yield fixed(("emotion", "people"), [
        "a crying baby", "an angry old man", "a laughing group of friends", "a happy couple",
        "a sad little girl", "a worried mother", "a proud father", "an excited child",
        "a bored teenager", "a nervous bride", "a grumpy old woman", "a shy little boy",
        "a furious young man", "a cheerful grandmother", "a lonely old man", "a scared child",
        "a surprised woman", "a joyful crowd", "a disappointed student", "a relieved family",
    ]), 20
    yield fixed(("clothing", "text"), [
        "a t-shirt with the word love", "a hoodie with big letters", "a cap with a printed logo",
        "a jersey with a name on the back", "a t-shirt with a slogan",
        "a tote bag printed with text",
    ]), 6


# fmt: on
# ---------------------------------------------------------------- selection


def _word_count_ok(text: str) -> bool:
    return MIN_WORDS <= len(text.split()) <= MAX_WORDS


def _articles_ok(text: str) -> bool:
    """'a'/'an' agree with the next word, so a template slip cannot ship 'a orange car'."""
    words = text.split()
    for article, word in zip(words, words[1:], strict=False):
        if article in ("a", "an") and an(word.strip('"')).split()[0] != article:
            return False
    return True


def pick(cands: list[Cand], n: int, rng: random.Random, seen: dict[str, str]) -> list[Cand]:
    """Take `n` lines, round-robin over templates and capped per item, so phrasing varies."""
    cands = [c for c in cands if "a group of two" not in c.text]
    rng.shuffle(cands)
    queues: dict[str, list[Cand]] = {}
    for cand in cands:
        queues.setdefault(cand.template, []).append(cand)
    distinct_items = len({c.item for c in cands}) or 1
    cap = math.ceil(n / distinct_items) + 1
    used: Counter[str] = Counter()
    out: list[Cand] = []
    while len(out) < n:
        progressed = False
        for queue in queues.values():
            while queue:
                cand = queue.pop()
                key = normalise_key(cand.text)
                if key in seen or used[cand.item] >= cap or not _word_count_ok(cand.text):
                    continue
                seen[key] = cand.text
                used[cand.item] += 1
                out.append(cand)
                progressed = True
                break
            if len(out) >= n:
                break
        if not progressed:
            break
    return out


def build(seed: int = SEED) -> list[Cand]:
    """The whole pool, in file order: each concept's own lines, then the two-concept lines."""
    rng = random.Random(seed)
    seen: dict[str, str] = {}
    per_concept: dict[str, list[Cand]] = {}
    generated: dict[str, list[Cand]] = {}
    for tag, make in CONCEPTS.items():
        cands = make()
        hand = [c for c in cands if c.template.startswith("fixed:")]
        for cand in hand:
            key = normalise_key(cand.text)
            if key in seen:
                raise ValueError(f"hand-written line repeated: {cand.text!r} ({tag})")
            if not _word_count_ok(cand.text):
                raise ValueError(f"hand-written line has a bad length: {cand.text!r}")
            seen[key] = cand.text
        per_concept[tag] = hand
        generated[tag] = [c for c in cands if not c.template.startswith("fixed:")]
    pairs: list[Cand] = []
    for cands, n in pair_groups(rng):
        pairs += pick(cands, n, rng, seen)
    for tag, rest in generated.items():
        need = SINGLES_PER_CONCEPT - len(per_concept[tag])
        per_concept[tag] += pick(rest, need, rng, seen)
    lines = [c for tag in CONCEPTS for c in per_concept[tag]] + pairs
    bad = [c.text for c in lines if not _articles_ok(c.text)]
    if bad:
        raise ValueError(f"wrong article in {len(bad)} line(s), e.g. {bad[:5]}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the pool")
    parser.add_argument("--check", action="store_true", help="only check --out is up to date")
    args = parser.parse_args(argv)
    lines = build()
    comments = [
        "general: ccsclip's own pool of short image descriptions, one concept tag (or two) each.",
        "Generated by scripts/make_general_pool.py (seeded); edit the script, not this file.",
    ]
    if args.check:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            fresh = Path(tmp) / "general.txt"
            write_pool(fresh, [c.text for c in lines], [c.tags for c in lines], comments=comments)
            same = args.out.exists() and fresh.read_bytes() == args.out.read_bytes()
        print(f"{args.out}: {'up to date' if same else 'STALE: rerun the script'}")
        return 0 if same else 1
    pool = write_pool(args.out, [c.text for c in lines], [c.tags for c in lines], comments=comments)
    print(f"wrote {args.out}: {len(pool)} descriptions, {len(pool.concepts)} concepts")
    for tag, count in pool.concept_counts().items():
        print(f"  {tag:13s} {count}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
