package needle

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// Filler is the built-in haystack: an endless stream of plain, varied
// English sentences about invented towns, their trades, weather, roads and
// numbers. Sentence i depends only on the seed and i, so any prefix of the
// stream is the same whatever length is asked for, and the 8k haystack is
// the start of the 16k one.
//
// Its vocabulary is disjoint from the needle keys and it never writes a
// number of more than four digits, so a needle's key and seven-digit value
// cannot occur in it by chance.
type Filler struct {
	seed uint64
}

// NewFiller returns the filler stream for seed.
func NewFiller(seed uint64) *Filler { return &Filler{seed: seed} }

// Name describes the haystack for run records.
func (f *Filler) Name() string { return fmt.Sprintf("synthetic filler (seed %d)", f.seed) }

// Sentence returns sentence i of the stream.
func (f *Filler) Sentence(i int) string {
	r := rand.New(rand.NewPCG(f.seed, uint64(i)^0x9e3779b97f4a7c15))
	w := words{r: r}
	return fillerTemplates[r.IntN(len(fillerTemplates))](&w)
}

// words draws the pieces of one sentence.
type words struct{ r *rand.Rand }

func (w *words) pick(list []string) string { return list[w.r.IntN(len(list))] }
func (w *words) num(lo, hi int) int        { return lo + w.r.IntN(hi-lo+1) }
func (w *words) town() string {
	return w.pick(townHeads) + w.pick(townTails)
}

// otherTown returns a town different from t.
func (w *words) otherTown(t string) string {
	for {
		if o := w.town(); o != t {
			return o
		}
	}
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

var fillerTemplates = []func(w *words) string{
	func(w *words) string {
		return fmt.Sprintf("The %s of %s sells %s at the %s every %s.", w.pick(trades), w.town(), w.pick(goods), w.pick(places), w.pick(weekdays))
	},
	func(w *words) string {
		t := w.town()
		return fmt.Sprintf("In %s, %s had %s, and the road to %s stayed %s for a week.", w.pick(months), t, w.pick(weathers), w.otherTown(t), w.pick(roadStates))
	},
	func(w *words) string {
		return fmt.Sprintf("%s has kept %d %s near the %s of %s since %d.", w.pick(people), w.num(2, 90), w.pick(animals), w.pick(places), w.town(), w.num(1650, 1899))
	},
	func(w *words) string {
		t := w.town()
		return fmt.Sprintf("A road of %d miles runs from %s to %s along the %s.", w.num(3, 140), t, w.otherTown(t), w.pick(landforms))
	},
	func(w *words) string {
		return fmt.Sprintf("Most houses in %s are built of %s, with roofs of %s.", w.town(), w.pick(materials), w.pick(roofs))
	},
	func(w *words) string {
		t := w.town()
		return fmt.Sprintf("Each %s, the %ss of %s send %s down the %s to %s.", w.pick(seasons), w.pick(trades), t, w.pick(goods), w.pick(landforms), w.otherTown(t))
	},
	func(w *words) string {
		return fmt.Sprintf("The %s in %s was rebuilt in %d after %s damaged its walls.", w.pick(places), w.town(), w.num(1700, 1899), w.pick(weathers))
	},
	func(w *words) string {
		return fmt.Sprintf("%s the %s says that the %s from %s is the best along the %s.", w.pick(people), w.pick(trades), w.pick(goods), w.town(), w.pick(landforms))
	},
	func(w *words) string {
		return fmt.Sprintf("Travellers reach %s by ferry whenever %s closes the high road.", w.town(), w.pick(weathers))
	},
	func(w *words) string {
		return fmt.Sprintf("There are %d wells in %s, and the deepest lies under the %s.", w.num(2, 40), w.town(), w.pick(places))
	},
	func(w *words) string {
		return fmt.Sprintf("On %ss the %s of %s fills with %ss and buyers of %s.", w.pick(weekdays), w.pick(places), w.town(), w.pick(trades), w.pick(goods))
	},
	func(w *words) string {
		return fmt.Sprintf("The farmers of %s count their harvest in sacks of %s, about %d in a good year.", w.town(), w.pick(goods), w.num(40, 2400))
	},
	func(w *words) string {
		t := w.town()
		return fmt.Sprintf("%s walked from %s to %s in %d days during the %s of %d.", w.pick(people), t, w.otherTown(t), w.num(2, 30), w.pick(seasons), w.num(1700, 1899))
	},
	func(w *words) string {
		return fmt.Sprintf("The stream near %s is %d yards wide where it passes the %s.", w.town(), w.num(4, 300), w.pick(places))
	},
	func(w *words) string {
		return fmt.Sprintf("When %s came in %s, the %ss of %s closed their shops early.", w.pick(weathers), w.pick(months), w.pick(trades), w.town())
	},
	func(w *words) string {
		t := w.town()
		return fmt.Sprintf("%s and %s share a %s, which opens at %d o'clock.", t, w.otherTown(t), w.pick(places), w.num(5, 11))
	},
	func(w *words) string {
		return fmt.Sprintf("A council of %d elders meets in %s on the first %s of each month.", w.num(3, 21), w.town(), w.pick(weekdays))
	},
	func(w *words) string {
		return fmt.Sprintf("An old song from %s tells of %s crossing the %s in %s.", w.town(), w.pick(animals), w.pick(landforms), w.pick(seasons))
	},
	func(w *words) string {
		return fmt.Sprintf("%s trades %s for %s with the %ss of %s.", w.pick(people), w.pick(goods), w.pick(goods), w.pick(trades), w.town())
	},
	func(w *words) string {
		return fmt.Sprintf("Visitors to %s often remark on the %s and the smell of %s.", w.town(), w.pick(places), w.pick(goods))
	},
	func(w *words) string {
		return fmt.Sprintf("In %d, %s counted %d households and %d %s.", w.num(1700, 1899), w.town(), w.num(20, 900), w.num(10, 3000), w.pick(animals))
	},
	func(w *words) string {
		return fmt.Sprintf("The %s east of %s floods about once in %d years.", w.pick(landforms), w.town(), w.num(3, 60))
	},
	func(w *words) string {
		return fmt.Sprintf("Children in %s learn the %s's craft from the age of %d.", w.town(), w.pick(trades), w.num(9, 15))
	},
	func(w *words) string {
		return fmt.Sprintf("The clock above the %s of %s runs %d minutes slow.", w.pick(places), w.town(), w.num(2, 25))
	},
	func(w *words) string {
		return fmt.Sprintf("%s remembers %s in %s, when %s lasted %d days.", capitalize(w.pick(elders)), w.pick(seasons), w.town(), w.pick(weathers), w.num(3, 20))
	},
	func(w *words) string {
		return fmt.Sprintf("The %s of %s pays %d pennies for a basket of %s.", w.pick(trades), w.town(), w.num(2, 90), w.pick(goods))
	},
}

var (
	townHeads = []string{"Ash", "Bram", "Cor", "Dun", "Elm", "Fen", "Gil", "Har", "Ink", "Jun", "Kel", "Lor",
		"Mar", "Nor", "Oak", "Pel", "Quil", "Ros", "Sel", "Tor", "Ul", "Vel", "Wes", "Yar"}
	townTails = []string{"ford", "wick", "by", "mere", "stead", "holm", "ton", "dale", "haven", "brook", "field", "gate"}
	people    = []string{"Alda", "Bertil", "Cosmo", "Dagny", "Edric", "Fenna", "Gorm", "Hilde", "Ivo", "Jorun", "Kasimir",
		"Liesl", "Mads", "Nell", "Osric", "Petra", "Quentin", "Runa", "Sigmar", "Tilde", "Ulla", "Vidar", "Wren", "Ysolde"}
	elders = []string{"the oldest weaver", "the ferryman", "the miller's widow", "the schoolmaster", "the innkeeper",
		"the night watchman", "the parish clerk"}
	trades = []string{"baker", "cooper", "weaver", "potter", "miller", "tanner", "smith", "glazier", "chandler",
		"mason", "carpenter", "ropemaker", "dyer", "fletcher", "saddler", "brewer", "cheesemaker", "bookbinder",
		"clockmaker", "shipwright"}
	goods = []string{"barley", "wool", "salt", "timber", "linen", "candles", "rope", "cider", "slate", "honey",
		"apples", "beeswax", "flax", "cheese", "iron nails", "lamp oil", "dried fish", "rye bread", "pears", "leather"}
	weathers = []string{"a cold wind from the north", "light rain every afternoon", "thick fog over the water",
		"a late frost", "heavy snow on the passes", "warm air from the south", "a week of drizzle", "a dry spell",
		"hail the size of peas", "a storm off the sea"}
	roadStates = []string{"muddy", "closed", "flooded", "busy", "quiet", "icy", "dusty"}
	places     = []string{"market square", "old mill", "harbour", "stone bridge", "chapel", "orchard", "granary",
		"east gate", "town hall", "ferry landing", "watchtower", "smithy", "guild house", "fish market"}
	landforms = []string{"valley", "ridge", "marsh", "river", "coast", "forest edge", "moor", "canal", "lake shore", "downs"}
	materials = []string{"grey stone", "red brick", "timber and clay", "river cobbles", "pale limestone", "dark slate"}
	roofs     = []string{"thatch", "clay tiles", "slate", "wooden shingles", "turf", "lead sheets"}
	animals   = []string{"goats", "geese", "sheep", "mules", "hens", "ponies", "beehives", "ducks", "pigs", "oxen"}
	seasons   = []string{"spring", "summer", "autumn", "winter"}
	months    = []string{"January", "February", "March", "April", "May", "June", "July", "August", "September",
		"October", "November", "December"}
	weekdays = []string{"Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"}
)
