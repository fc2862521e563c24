"""Hand-written paragraphs on one technical domain, beekeeping, for continued pretraining.

Each entry is (topic, text): ``topic`` is a part of the craft, ``text`` an original paragraph of plain
technical prose (40-100 words) on its own subject, so the held-out split (``build.py`` takes every sixth
paragraph) shares no passage with the training split. ``recipes/continued-pretraining.yaml`` trains on
``domain/train.jsonl`` and measures perplexity on ``domain/eval.jsonl``.
"""

TEXTS = [
    # ---------------------------------------------------------- biology
    ("biology",
     "A honey bee colony has three kinds of adult: one queen, tens of thousands of female workers, and in the "
     "warmer months a few hundred to a few thousand male drones. The queen is the only fully fertile female. "
     "Workers do every other job in the hive, and drones exist to mate with young queens from other colonies."),
    ("biology",
     "Honey bees develop through four stages: egg, larva, pupa and adult. An egg hatches after about three "
     "days. The larva is fed by nurse bees and grows quickly, then spins a cocoon after its cell is capped "
     "with wax. Inside the capped cell the pupa slowly takes on the shape of an adult bee."),
    ("biology",
     "Development time differs by caste. A queen emerges about sixteen days after her egg was laid, a worker "
     "after about twenty-one days, and a drone after about twenty-four. Beekeepers use these figures to "
     "predict when a new queen will emerge and to judge how long ago eggs were present in a colony."),
    ("biology",
     "Every young larva is first fed royal jelly, a protein-rich secretion from glands in the heads of nurse "
     "bees. Worker larvae are soon switched to a diet that includes pollen and honey, while a larva chosen to "
     "become a queen receives royal jelly in abundance throughout its growth."),
    ("biology",
     "A worker's duties change with her age. In her first weeks she cleans cells, feeds larvae, makes wax and "
     "receives nectar from foragers. Later she may guard the entrance, and for the last part of her life she "
     "flies out to collect nectar, pollen, water and plant resins."),
    ("biology",
     "In summer a worker bee usually lives for five to six weeks, most of it spent inside the hive. Bees "
     "raised in late autumn live much longer, often four to six months, because they do little brood rearing "
     "and carry larger reserves of fat and protein in their bodies through the winter."),
    ("biology",
     "Drones have large eyes, stout bodies and no sting. They do not forage or build comb. On warm afternoons "
     "they fly to drone congregation areas, where they gather in the air and wait for virgin queens. A drone "
     "that mates dies soon afterwards, and in autumn workers push the remaining drones out of the hive."),
    ("biology",
     "A virgin queen leaves the hive on one or a few mating flights a week or so after she emerges. She mates "
     "in the air with a dozen or more drones and stores their sperm in an organ called the spermatheca. That "
     "supply lasts for the rest of her life, which can be several years."),
    ("biology",
     "The queen decides the sex of each egg as she lays it. An egg fertilized with stored sperm becomes a "
     "female, either a worker or a queen. An unfertilized egg becomes a drone. Whether a female becomes a "
     "worker or a queen depends on how she is fed as a larva, not on her egg."),
    ("biology",
     "The queen produces pheromones that spread through the colony as workers touch and feed her. Queen "
     "mandibular pheromone holds the colony together, suppresses the rearing of new queens and keeps most "
     "workers from developing their ovaries. When it weakens, the colony starts to prepare replacement queens."),
    ("biology",
     "Workers make beeswax in four pairs of glands on the underside of the abdomen. The wax appears as thin "
     "white scales, which the bees chew and shape into comb. Wax production takes a lot of energy, so colonies "
     "draw new comb most readily when nectar is flowing and young bees are plentiful."),
    ("biology",
     "Comb is built from hexagonal cells that share their walls, a shape that holds the most volume for the "
     "least wax. Worker cells are about five millimetres across and drone cells slightly larger. The cells "
     "tilt upwards a little, which helps keep nectar and larval food from running out."),
    ("biology",
     "A forager that finds a rich source of food returns and performs a waggle dance on the comb. The angle of "
     "the straight waggle run, measured against the vertical, shows the direction of the food relative to the "
     "sun, and the length of the run tells other bees how far away it is."),
    ("biology",
     "For food close to the hive, foragers perform a round dance instead of a waggle dance. The dancer circles "
     "first one way and then the other. It tells recruits that good forage is nearby, and they find it partly "
     "by the scent of the flowers carried on the dancer's body."),
    ("biology",
     "Bees collect plant resins and mix them with wax to make propolis, a sticky material they use to seal "
     "gaps and narrow openings in the hive. Propolis also has antimicrobial properties. Some colonies use much "
     "more of it than others, which beekeepers notice when frames stick together."),
    ("biology",
     "Nectar is mostly water and sugar. House bees reduce its water content by spreading it thinly in cells "
     "and fanning their wings, and enzymes they add break sucrose into glucose and fructose. When the water "
     "content falls to around eighteen percent, the bees cap the cell with a layer of wax."),
    ("biology",
     "Pollen is the colony's source of protein, fat, vitamins and minerals. Foragers pack it into baskets on "
     "their hind legs and carry it home, where it is pressed into cells and slightly fermented into bee bread. "
     "Nurse bees eat bee bread to produce the food they give to larvae."),
    ("biology",
     "Bees keep the brood nest close to thirty-five degrees Celsius. In cold weather workers generate heat by "
     "shivering their flight muscles. In hot weather they fan air through the hive and spread droplets of "
     "water on the comb so that evaporation carries the heat away."),
    ("biology",
     "A colony without a queen soon changes its behaviour. Bees become restless and may make a loud roaring "
     "sound when the hive is opened. If young worker larvae are present, workers enlarge some of their cells "
     "into emergency queen cells and feed the larvae royal jelly."),
    # ---------------------------------------------------------- equipment
    ("equipment",
     "The modern movable-frame hive is based on the bee space, a gap of about six to nine millimetres that "
     "bees leave open as a passage. A smaller gap gets sealed with propolis and a larger one gets filled with "
     "comb. Designing the hive around this gap lets each frame be lifted out without tearing comb."),
    ("equipment",
     "A Langstroth hive is a stack of rectangular boxes standing on a floor and covered by an inner cover and "
     "a roof. Each box holds eight or ten frames hanging side by side. Because the parts are standard, boxes "
     "and frames can be moved between colonies and added or removed as needed."),
    ("equipment",
     "Hive boxes come in several depths. Deep boxes are usually used for the brood nest, where the queen lays. "
     "Medium and shallow boxes, called supers, are added above for honey storage. A full deep box of honey can "
     "weigh more than thirty kilograms, so many beekeepers prefer lighter medium boxes throughout."),
    ("equipment",
     "A frame is a wooden or plastic rectangle that holds a sheet of comb. Most beekeepers fit frames with "
     "foundation, a thin sheet of wax or plastic embossed with the cell pattern. Foundation guides the bees to "
     "build straight comb of worker-sized cells that stays inside the frame."),
    ("equipment",
     "Some beekeepers use foundationless frames, which have only a narrow starter strip along the top bar. The "
     "bees build natural comb downwards from it. This saves the cost of foundation and lets the bees choose "
     "cell sizes, but the comb is fragile at first and must be handled with care."),
    ("equipment",
     "A top-bar hive is a long horizontal box with wooden bars laid across the top. The bees hang their comb "
     "from each bar, with no frame around it. The design needs no lifting of heavy boxes, but combs break "
     "easily when turned, and honey is usually harvested by cutting the comb out."),
    ("equipment",
     "A queen excluder is a grid with gaps wide enough for workers but too narrow for the queen. Placed "
     "between the brood boxes and the honey supers, it keeps eggs and brood out of the honey comb. Some "
     "beekeepers avoid excluders because they believe workers are slower to move up through them."),
    ("equipment",
     "The smoker is a metal can with bellows attached. Fuel such as dry grass, pine needles, wood shavings or "
     "hessian smoulders inside and produces cool white smoke. A few puffs at the entrance and under the cover "
     "before opening a hive help keep the bees calm during an inspection."),
    ("equipment",
     "A hive tool is a flat steel bar with a sharpened end and, on many models, a hooked end. Beekeepers use "
     "it to prise apart boxes glued together with propolis, to loosen and lift frames, and to scrape burr "
     "comb and wax from wooden parts. It is the one tool used at every inspection."),
    ("equipment",
     "Protective clothing ranges from a simple veil to a full suit. A veil that keeps bees away from the face "
     "is the most important item, since stings near the eyes are the most dangerous. Gloves protect the hands "
     "but reduce feeling, so many experienced beekeepers work with thin gloves or none."),
    ("equipment",
     "An entrance reducer is a strip of wood that narrows the hive entrance. A small entrance is easier for "
     "guard bees to defend against robbing bees and wasps, and it helps a weak colony keep warm. In a strong "
     "nectar flow the reducer is removed so foragers can come and go freely."),
    ("equipment",
     "A mouse guard is a metal strip with holes large enough for bees but too small for mice. Fitted over the "
     "entrance in autumn, it stops mice from moving into the warm hive for the winter, where they chew comb "
     "and frames and leave a mess the bees must clean up in spring."),
    ("equipment",
     "A screened bottom board replaces the solid floor of a hive with a mesh. Mites and debris that fall from "
     "the comb drop through it and out of the hive. With a removable tray slid underneath, the beekeeper can "
     "count the mites that fall over a few days to estimate the infestation."),
    ("equipment",
     "Feeders supply syrup when natural forage is short. A contact feeder is an inverted container with a "
     "fine mesh lid placed over the frames. Frame feeders sit inside the box in place of a frame, and entrance "
     "feeders are easy to check but can attract robbing bees from other hives."),
    ("equipment",
     "A nucleus hive, usually called a nuc, is a small hive holding three to six frames. Beekeepers use nucs "
     "to start new colonies, to keep spare queens, and to catch swarms. A colony bought as a nuc comes with a "
     "laying queen, brood, stores and comb, and grows quickly once installed."),
    ("equipment",
     "Hives should stand on a firm, level base raised off the ground. Stands made of blocks, timber or metal "
     "keep the floor dry and out of reach of damp and some pests. The hive can tilt slightly forward so that "
     "rain and condensation drain out of the entrance."),
    ("equipment",
     "Wooden hive parts last longer when the outside surfaces are painted or treated. Beekeepers usually leave "
     "the inside bare, since the bees coat it with propolis themselves. Cedar and pine are common timbers, "
     "while polystyrene hives give better insulation but are easier to damage."),
    ("equipment",
     "A bee brush has soft, long bristles for sweeping bees off comb gently. It is used when taking honey "
     "frames or when checking a frame covered in bees. Brushing should be done with a quick flick, since slow "
     "strokes roll the bees and tend to make them defensive."),
    ("equipment",
     "Frames must hang at the right distance from each other, about thirty-five millimetres from centre to "
     "centre in the brood nest. Many frames have widened side bars that set this spacing when pushed together, "
     "while others use plastic or metal spacers fitted to the lugs. Wrong spacing leads to brace comb."),
    # ---------------------------------------------------------- seasons
    ("seasons",
     "Colony size follows the seasons. In late winter the queen starts laying again, and the population grows "
     "through spring to a peak in early summer. After the main nectar flow brood rearing slows, and the "
     "colony shrinks to a smaller winter population that lives on its stores."),
    ("seasons",
     "The first inspection of spring is made on a calm day warm enough for the bees to fly, often above about "
     "fifteen degrees Celsius. The beekeeper checks that the queen is laying, that there is enough food, and "
     "that the colony is strong and free of obvious disease, then closes up quickly."),
    ("seasons",
     "Early spring is a dangerous time for food. The colony is raising more brood each week, which uses stores "
     "fast, while flowers may still be scarce. Many colonies that survive the winter die of starvation in "
     "March or April, so beekeepers lift the hive to judge its weight."),
    ("seasons",
     "Hefting means lifting one side of the hive slightly to judge how much food is inside. With practice a "
     "beekeeper can tell a heavy hive from a light one without opening it. It is a quick way to check stores "
     "in winter, when opening the hive would chill the cluster."),
    ("seasons",
     "A honey super should be added before the colony runs out of room, usually when bees cover most of the "
     "frames in the top box and a nectar flow is starting. Adding space early reduces congestion, a frequent "
     "cause of swarming in late spring."),
    ("seasons",
     "A nectar flow is a period when plants in range produce nectar in quantity. During a strong flow the "
     "colony gains weight every day, fresh white wax appears on the comb, and foragers crowd the entrance. "
     "Between flows, in a dearth, the bees may become defensive and prone to robbing."),
    ("seasons",
     "In many temperate regions there is a summer gap, a few weeks after the spring flowers and before the "
     "late summer plants when little nectar is available. A colony that stored plenty in spring may still run "
     "short, and a beekeeper who took too much honey may need to feed."),
    ("seasons",
     "Preparing for winter begins in late summer. The beekeeper removes the honey crop, treats for mites so "
     "that the winter bees are raised healthy, reduces the entrance, and checks that each colony has enough "
     "stores. Weak colonies are often combined with stronger ones at this point."),
    ("seasons",
     "In a cool temperate climate a colony usually needs somewhere between fifteen and twenty-five kilograms "
     "of stores to get through the winter, depending on the local climate and the bees. A full deep frame "
     "holds roughly two to three kilograms of honey."),
    ("seasons",
     "In cold weather the bees form a winter cluster, a tight ball around the queen and any brood. Bees on the "
     "outside form an insulating layer, while those inside generate heat. The cluster moves slowly across the "
     "comb, eating the stores it touches, and loosens on warmer days."),
    ("seasons",
     "Damp is often more dangerous to wintering bees than cold. Moisture from the cluster's breathing can "
     "condense on the inner cover and drip onto the bees. Good ventilation at the top of the hive, or an "
     "insulated cover that keeps the roof warm, reduces the condensation."),
    ("seasons",
     "On mild winter days bees leave the hive for cleansing flights. They do not defecate inside the hive, so "
     "after a long cold spell many bees fly out together and leave yellow spots on snow or washing nearby. "
     "Seeing these flights is a sign that the colony is still alive."),
    ("seasons",
     "Fondant or candy can be placed over the cluster in winter if a colony is short of food. Unlike syrup, it "
     "does not add moisture to the hive, and the bees can use it when it is too cold for them to take and "
     "process liquid feed. It is placed directly above where the bees are clustered."),
    ("seasons",
     "Bees are less active in cold weather, and opening a hive in winter breaks the seal of propolis and lets "
     "heat escape. Winter checks are therefore done from outside: watching the entrance, hefting the hive, and "
     "listening through the wall for the hum of the cluster."),
    ("seasons",
     "The end of winter is a good time to clean and repair equipment. Old dark comb can be melted down, boxes "
     "scraped and repainted, and new frames assembled. Having spare equipment ready before spring matters "
     "because colonies can outgrow their space in a few weeks once the weather turns."),
    ("seasons",
     "Beekeepers keep records of each inspection: the date, whether eggs and the queen were seen, the amount "
     "of brood and stores, temper, signs of disease and what was done. Over a season these notes show how "
     "each colony is developing and make problems easier to spot early."),
    ("seasons",
     "Inspections in the active season are usually made every seven to ten days. That interval is shorter "
     "than the time it takes a colony to raise a new queen from an egg, so a beekeeper checking regularly will "
     "see queen cells before a swarm can leave with the old queen."),
    ("seasons",
     "A late summer nectar flow from plants such as heather or ivy can fill the brood nest with stores just "
     "as the queen reduces laying. Ivy honey sets very hard in the comb, and some bees find it difficult to "
     "use in winter unless they have access to water on mild days."),
    # ---------------------------------------------------------- swarming
    ("swarming",
     "Swarming is how honey bee colonies reproduce. The old queen leaves with roughly half of the workers, "
     "while the bees left behind raise a new queen. For a wild colony it is a sign of success, but for a "
     "beekeeper it means losing many foragers and most of the season's honey."),
    ("swarming",
     "Colonies prepare to swarm by building queen cups along the edges and bottoms of the comb. When the queen "
     "lays in these cups and the bees start to feed the larvae, the cups become queen cells. Charged queen "
     "cells show that a colony has started swarm preparations in earnest."),
    ("swarming",
     "Swarm cells hang from the lower edges of the comb and are usually many in number. Supersedure cells, "
     "raised to replace a failing queen, are fewer and often found on the face of the comb. Telling them "
     "apart helps a beekeeper decide whether the colony intends to swarm."),
    ("swarming",
     "The first swarm usually leaves soon after the first queen cell is sealed, on a fine day around the "
     "middle of the day. The bees pour from the entrance, swirl in the air, and settle in a cluster on a "
     "nearby branch or post while scouts look for a permanent home."),
    ("swarming",
     "A swarm hanging in a cluster is usually gentle, because the bees are full of honey and have no home to "
     "defend. To collect one, a beekeeper holds a box beneath it and shakes the branch sharply. If the queen "
     "falls into the box, the rest of the bees will follow her in."),
    ("swarming",
     "Scout bees from a swarm search the surrounding area for cavities, often hollow trees or wall spaces of "
     "around forty litres. They report good sites with dances on the surface of the cluster, and once enough "
     "scouts agree on one site the whole swarm takes off and flies there."),
    ("swarming",
     "After the first swarm leaves, the first virgin queen to emerge may lead further swarms, called "
     "afterswarms or casts. Each is smaller than the last. A colony that casts repeatedly can be left too "
     "weak to gather a crop, so beekeepers reduce the queen cells to one."),
    ("swarming",
     "Congestion is one of the main triggers of swarming. When the brood nest is full and young bees have "
     "nothing to do, the queen's pheromone spreads less well through the crowd. Giving space in time, both for "
     "the queen to lay and for nectar, lowers the urge to swarm."),
    ("swarming",
     "An artificial swarm imitates natural swarming under the beekeeper's control. The old queen and the "
     "flying bees are placed in a new box on the original site, and the brood with its queen cells is moved "
     "aside. The colony feels it has swarmed, but no bees are lost."),
    ("swarming",
     "Clipping one wing of the queen is a swarm control method some beekeepers use. A clipped queen cannot fly "
     "with the swarm, so the bees come back to the hive, giving the beekeeper more time to act. It does not "
     "stop swarm preparations, and the colony will try again with a new queen."),
    ("swarming",
     "Bait hives are empty boxes set up to attract passing swarms. An old brood comb and a few drops of lemon "
     "grass oil, which smells like a pheromone bees use to mark a site, make them more appealing. They work "
     "best placed a few metres off the ground in a shaded spot."),
    ("swarming",
     "A newly hived swarm should be given frames of foundation or drawn comb and fed if the weather is poor. "
     "Swarms are strong comb builders, since the bees left with full stomachs and many are of wax-making age. "
     "The queen usually starts laying within a few days."),
    ("swarming",
     "Swarming tendency is partly inherited. Some strains of bee swarm readily, while others build large "
     "colonies with little urge to swarm. Beekeepers who raise their own queens often select from colonies "
     "that showed no swarm preparations during the season."),
    ("swarming",
     "A demaree is a swarm control method named after a nineteenth-century beekeeper. The queen is left on one "
     "frame of brood in the bottom box, and the rest of the brood is moved above a queen excluder. The "
     "crowded brood nest is relieved without splitting the colony."),
    ("swarming",
     "Before swarming the queen slims down. Workers feed her less and push her about so she loses weight and "
     "can fly. Her laying rate drops in the days before the swarm leaves, so a sudden fall in eggs alongside "
     "sealed queen cells is a warning that departure is close."),
    ("swarming",
     "Bees in a swarm have found no home yet and can move off within hours, or they can stay on their branch "
     "for a day or more while the scouts decide. A beekeeper called to a swarm should go promptly, because a "
     "swarm that has gone into a wall or chimney is hard to remove."),
    ("swarming",
     "A split divides a strong colony into two, each with brood and stores. The part without a queen raises "
     "one from young larvae or is given a mated queen. Splitting is a way to control swarming and to increase "
     "the number of colonies at the same time."),
    ("swarming",
     "Unwanted swarm cells can be removed, but destroying cells alone rarely stops a determined colony. The "
     "bees build new ones within days, and if a single cell is missed the colony swarms anyway. Removing cells "
     "works best together with giving more space or making a split."),
    # ---------------------------------------------------------- health
    ("health",
     "The varroa mite is the most serious pest of the western honey bee. Female mites feed on adult bees and "
     "reproduce inside capped brood cells. They weaken the bees they feed on and spread viruses, and an "
     "untreated colony in most regions will collapse within two or three years."),
    ("health",
     "Varroa numbers rise through the season because mites breed in brood, especially drone brood. A colony "
     "with a modest mite count in spring can have a heavy infestation by late summer, just when the long-lived "
     "winter bees are being raised. Monitoring in summer therefore matters most."),
    ("health",
     "An alcohol wash gives a reliable count of mites. About three hundred bees, half a cup, are shaken from a "
     "brood frame into a jar with alcohol and shaken for a minute. The mites drop off and are counted, and "
     "the count is expressed as mites per hundred bees."),
    ("health",
     "A sugar roll counts mites without killing the bees. The sample is shaken in a jar with powdered sugar, "
     "which makes the mites lose their grip. After a minute or two the sugar and mites are shaken out through "
     "a mesh lid and counted, and the bees are returned to the hive."),
    ("health",
     "Oxalic acid is a common varroa treatment, applied by trickling a sugar solution between the frames or by "
     "vaporising crystals under the hive. It kills mites on adult bees but not those inside capped cells, so "
     "it works best when the colony has little or no brood, as in early winter."),
    ("health",
     "Formic acid treatments release vapour that can reach mites inside capped brood cells. Their effect "
     "depends strongly on temperature: too cool and they are weak, too hot and they can harm the queen and "
     "brood. Beekeepers must follow the product label closely on dose and timing."),
    ("health",
     "Thymol, a compound from thyme, is used in gel and strip treatments against varroa. It works slowly over "
     "several weeks and needs warm weather to evaporate. Bees may slow their brood rearing during treatment, "
     "and honey supers must be removed because thymol taints the honey."),
    ("health",
     "Removing drone brood is a treatment-free way to reduce mites. A frame left for the bees to build drone "
     "comb attracts many mites because they prefer drone cells. Once the cells are capped, the frame is taken "
     "out and frozen, killing the mites inside before they emerge."),
    ("health",
     "Deformed wing virus is carried and spread by varroa. Bees infected as pupae often emerge with shrivelled, "
     "crumpled wings and short abdomens and die soon after. Seeing such bees at the entrance or on the comb "
     "is a strong sign that the mite load is too high."),
    ("health",
     "American foulbrood is a bacterial disease that kills larvae after their cells are capped. Its spores "
     "survive for decades and spread through honey and equipment. In many countries it must be reported to "
     "the authorities, and infected colonies and their equipment are usually destroyed by burning."),
    ("health",
     "A simple field test for American foulbrood is the rope test. A matchstick pushed into a sunken, "
     "discoloured cell and slowly withdrawn pulls out a brown, elastic thread of decayed larva. A positive "
     "result should be confirmed by a laboratory or a bee inspector."),
    ("health",
     "European foulbrood kills larvae before their cells are capped. Affected larvae look twisted, yellowish "
     "and melted in their cells instead of pearly white and curled. It is also notifiable in many countries, "
     "and treatment depends on how severe the outbreak is."),
    ("health",
     "Chalkbrood is a fungal disease in which larvae turn into hard, chalk-white mummies. The bees remove them, "
     "and they can often be seen at the entrance or on the floor. It is most common in damp, chilled colonies "
     "and usually clears up as the colony grows stronger."),
    ("health",
     "Nosema is a gut parasite of adult bees. Infected bees live shorter lives and digest food poorly, and "
     "colonies may build up slowly in spring. Good stores of pollen, clean comb and replacing old dark comb "
     "regularly help keep the infection in check."),
    ("health",
     "Sacbrood is a viral disease in which a dead larva becomes a fluid-filled sac with a dark, upturned head. "
     "It is rarely serious and often disappears on its own during a nectar flow. Requeening can help if a "
     "colony shows it for a long time."),
    ("health",
     "The small hive beetle is a pest that lays eggs in the hive, and its larvae tunnel through comb and "
     "ferment the honey, leaving a slimy mess. Strong colonies keep beetles in check. Weak colonies and "
     "stored honey supers in warm climates are most at risk."),
    ("health",
     "Wax moths lay eggs in comb, and their larvae eat wax, pollen and cocoons, leaving silk tunnels and "
     "webbing. A strong colony defends its comb, but stored comb is vulnerable. Freezing frames for two days "
     "kills every stage of the moth before storage."),
    ("health",
     "Wasps and hornets raid hives in late summer for honey and bees. Narrowing the entrance helps the guards "
     "defend it. Invasive hornets that hunt bees in the air can stop foraging entirely, and in some regions "
     "sightings must be reported so that nests can be found and destroyed."),
    ("health",
     "Robbing happens when bees from strong colonies steal honey from weaker ones, most often in a dearth. "
     "Signs include fighting at the entrance and bees flying in a zigzag around the hive. Robbing can kill a "
     "weak colony and spread disease, so spilled syrup and open honey must be avoided."),
    ("health",
     "Old brood comb darkens with each generation of bees, because cocoons and debris build up in the cells. "
     "It can also hold spores and pesticide residues. Many beekeepers replace two or three brood combs a year "
     "so that no comb stays in the brood nest for more than a few years."),
    ("health",
     "Moving frames, bees and equipment between colonies spreads disease. Beekeepers reduce the risk by "
     "cleaning hive tools between apiaries, scorching wooden parts from dead colonies, and never feeding bees "
     "honey of unknown origin, which can carry foulbrood spores."),
    # ---------------------------------------------------------- harvest
    ("harvest",
     "Honey is ready to harvest when most of the cells in a frame are capped with wax. Uncapped nectar may "
     "hold too much water and can ferment once extracted. A frame that drips nectar when shaken firmly over "
     "the hive is not ready to be taken."),
    ("harvest",
     "A refractometer measures the water content of honey from a drop on its prism. Honey with more than "
     "about twenty percent water is likely to ferment, and most standards set a limit near that figure. "
     "Beekeepers check uncertain frames before extracting them."),
    ("harvest",
     "A clearer board is placed under the honey supers a day or two before harvest. It lets bees leave the "
     "supers but makes it hard for them to return, so the boxes are nearly empty when the beekeeper takes "
     "them. It works best when the supers contain no brood."),
    ("harvest",
     "Uncapping removes the wax cappings from comb so the honey can be spun out. Beekeepers use a heated knife, "
     "a cold serrated knife or an uncapping fork. The cappings are collected in a tray and drained, since "
     "they hold honey and make high-quality wax once melted."),
    ("harvest",
     "An extractor is a drum with a basket that spins uncapped frames. The force throws honey out of the "
     "cells against the wall, where it runs down to a tap at the bottom. Tangential extractors hold frames "
     "with one face outwards and must be reversed, while radial ones empty both sides at once."),
    ("harvest",
     "Extracted honey is strained through coarse and then fine mesh to remove bits of wax and bees, then left "
     "to settle in a tank for a day or two. Air bubbles and fine wax rise to the top and are skimmed off before "
     "the honey is run through the tap into jars."),
    ("harvest",
     "Most honey crystallises with time. Honey with more glucose than fructose, such as oilseed rape honey, "
     "can set within days, while high-fructose honey may stay liquid for a year. Crystallisation does not mean "
     "the honey has spoiled, and gentle warming makes it liquid again."),
    ("harvest",
     "Soft set or creamed honey is made by seeding liquid honey with a small amount of finely crystallised "
     "honey and stirring it as it sets. The fine crystals give a smooth texture that spreads easily. The "
     "honey is kept cool, around fourteen degrees Celsius, while it sets."),
    ("harvest",
     "Heating honey too much darkens it and destroys some of its enzymes and aroma. It also raises the level "
     "of hydroxymethylfurfural, a compound used as an indicator of heat damage and age. Beekeepers warm honey "
     "no more than needed, usually below about forty degrees Celsius."),
    ("harvest",
     "Comb honey is sold in the wax, just as the bees built and capped it. It is produced in thin foundation or "
     "without foundation in shallow frames or special sections, and cut into pieces after harvest. Producing "
     "it needs a strong nectar flow and crowded colonies."),
    ("harvest",
     "Heather honey is thixotropic: it is a gel that turns liquid when stirred and sets again when left still. "
     "It cannot be spun out in an ordinary extractor. Beekeepers press the comb or loosen the honey in each "
     "cell with a tool of fine needles before spinning."),
    ("harvest",
     "A beekeeper should leave enough honey for the colony. Taking every frame in late summer means the bees "
     "must be fed heavily with syrup for winter. Many beekeepers harvest only from the supers and leave the "
     "honey in the brood boxes to the bees."),
    ("harvest",
     "Cappings and old comb can be rendered into beeswax. The wax is melted in water or in a solar wax melter, "
     "strained, and left to cool so that impurities settle to the bottom of the block. Clean wax can be used "
     "for candles, polish or new foundation."),
    ("harvest",
     "Honey absorbs moisture from the air, so it must be stored in airtight containers. A honey room or "
     "kitchen used for extraction should be dry, and buckets should be sealed as soon as they are filled. "
     "Honey that takes up water can ferment even if it was ripe when extracted."),
    ("harvest",
     "The flavour and colour of honey depend on the flowers the bees visited. Lime and acacia honeys are pale "
     "and mild, buckwheat honey is dark and strong, and honey from a mixture of summer flowers varies from "
     "year to year with what was in bloom."),
    ("harvest",
     "Honey for sale must meet labelling rules, which in most countries include the name of the product, the "
     "net weight, a best-before date, the name and address of the producer, and the country of origin. A "
     "floral source may only be named if the honey comes mainly from it."),
    ("harvest",
     "Extraction equipment should be food grade and clean. Stainless steel and food-safe plastic are common "
     "for extractors, strainers and buckets. After use, honey is rinsed off with cold water first, since hot "
     "water melts the wax and smears it over the surfaces."),
    ("harvest",
     "Wet supers, the boxes of frames just after extraction, can be put back on the hive for the bees to clean "
     "up the leftover honey. They are placed above the inner cover in the evening so the bees move the honey "
     "down without setting off robbing."),
    # ---------------------------------------------------------- forage
    ("forage",
     "Honey bees usually forage within about three kilometres of the hive but can fly much further when forage "
     "is scarce. The area within that radius decides what the colony can gather. Before siting an apiary, "
     "beekeepers look at the trees, crops and wild flowers in that range."),
    ("forage",
     "A good apiary site gets morning sun, shelter from strong wind, and good drainage. Hives facing south or "
     "east start foraging earlier in the day. Frost pockets at the bottom of valleys and sites prone to "
     "flooding are best avoided."),
    ("forage",
     "Bees need water to cool the hive and to dilute stored honey for the brood. A colony can use a litre or "
     "more on a hot day. A shallow water source with stones or floating material for landing, near the hive, "
     "keeps bees from visiting neighbours' ponds and pools."),
    ("forage",
     "Willow and hazel are early sources of pollen in many temperate regions, flowering while the weather is "
     "still cold. This early pollen lets the colony start raising brood in late winter, so apiaries with "
     "willows nearby tend to build up faster in spring."),
    ("forage",
     "Fruit trees such as apple, pear and cherry flower in spring and are valuable for both bees and growers. "
     "Orchards often hire colonies for pollination, since many varieties set little fruit without insects "
     "carrying pollen between trees of compatible varieties."),
    ("forage",
     "Oilseed rape gives a large, early nectar flow in many farming areas. Its honey is pale and sets hard "
     "very quickly, sometimes in the comb before it can be extracted. Beekeepers near rape fields harvest "
     "promptly when the crop finishes flowering."),
    ("forage",
     "Clover is a traditional source of high-quality honey in grassland areas. White clover yields best in "
     "warm, moist weather on fertile soils. Modern grassland managed for silage is often cut before clover "
     "flowers, which has reduced this source in many regions."),
    ("forage",
     "Lime trees, also called linden or basswood, can give a heavy nectar flow in early summer. Whether they "
     "yield depends strongly on the weather, with warm humid nights being best. Some species of lime are "
     "thought to affect bumble bees more than honey bees late in the season."),
    ("forage",
     "Bramble, or blackberry, flowers over a long period in summer and is a reliable source of nectar along "
     "hedges and waste ground. Its honey is light and fruity. Because it flowers for so long, it helps "
     "colonies through the period between the spring and late summer flows."),
    ("forage",
     "Ivy is one of the last major nectar and pollen sources of the year, flowering in autumn when little "
     "else is in bloom. Colonies can gather large amounts on sunny autumn days, which helps them top up "
     "their stores and raise winter bees."),
    ("forage",
     "Pollen colour gives a clue to which plants the bees are visiting. Watching the loads on returning "
     "foragers, a beekeeper may see orange from dandelion, grey-white from bramble, or dark red from "
     "horse chestnut. Charts of pollen colours help identify the plants."),
    ("forage",
     "Honeydew is a sugary liquid excreted by aphids and other sap-sucking insects on trees such as oak, lime "
     "and fir. Bees collect it like nectar and turn it into dark, strongly flavoured honeydew honey, which is "
     "rich in minerals but can be hard for bees to digest in winter."),
    ("forage",
     "Pesticides can harm bees that visit treated crops or drink contaminated water. Sprays applied during "
     "flowering are the greatest risk. Many beekeepers agree with farmers nearby to be told before spraying, "
     "so that hives can be closed or moved for a few days."),
    ("forage",
     "Planting for bees works best with plants that flower in sequence through the season and are grown in "
     "clumps large enough to be worth a forager's trip. Single-flowered varieties are better than double ones, "
     "whose extra petals often replace the parts that make nectar and pollen."),
    ("forage",
     "Migratory beekeepers move colonies to follow crops and flowering seasons. Hives are moved at night, when "
     "all the foragers are home, with the entrance closed and good ventilation. A move of more than about five "
     "kilometres is needed, or foragers will return to the old site."),
    ("forage",
     "Colonies moved only a short distance within the same apiary tend to fly back to where the hive used to "
     "stand. A common rule is to move them less than a metre or more than a few kilometres. To move a hive "
     "further in one step, it is first taken away for two weeks."),
    ("forage",
     "A colony's weight shows how well it is foraging. Some beekeepers keep one hive on a scale and log its "
     "weight each day. A steady gain means a nectar flow is on, while a loss in summer warns that a dearth "
     "has begun and stores should be watched."),
    ("forage",
     "The number of colonies an area can support depends on its forage. Putting too many hives in one place "
     "means the bees compete with each other and with wild pollinators. Beekeepers in a crowded area may get "
     "smaller crops than those with fewer hives nearby."),
    # ---------------------------------------------------------- handling
    ("handling",
     "Before opening a hive, the beekeeper stands to one side of the entrance, out of the bees' flight path. "
     "Movements are slow and steady, frames are lifted straight up without rolling bees against the box "
     "walls, and the inspection is kept short on cool days."),
    ("handling",
     "A first frame is often taken out near the wall of the box, where it is less likely to hold the queen. "
     "It is leaned against the hive or placed in a frame holder, which leaves room to slide the other frames "
     "apart without crushing bees."),
    ("handling",
     "A frame is inspected by holding it by its lugs over the open box, so that a queen falling off lands "
     "back in the hive. Turning it on its end like a page of a book keeps the comb vertical, which stops "
     "fresh nectar and heavy comb from falling out."),
    ("handling",
     "Finding the queen is easier on a sunny day, when many older bees are out foraging. She is usually on "
     "brood frames near eggs, and the bees around her often face her in a ring. Her longer abdomen and "
     "steady, unhurried walk help to pick her out."),
    ("handling",
     "Many beekeepers mark their queens with a dot of paint on the thorax. An international colour code links "
     "the colour to the year: white for years ending in 1 or 6, yellow for 2 or 7, red for 3 or 8, green for 4 "
     "or 9 and blue for 5 or 0. A marked queen is easier to find and her age is known."),
    ("handling",
     "Eggs stand upright in the bottom of the cell on the day they are laid and lean over as they age. Seeing "
     "single upright eggs in the centre of cells shows that a laying queen was present within the last three "
     "days, even if the queen herself is not found."),
    ("handling",
     "Several eggs in one cell, laid on the cell walls, usually mean laying workers. In a colony that has been "
     "queenless for weeks, some workers start laying unfertilized eggs, which become drones. Such colonies "
     "rarely accept a new queen and are often combined with another colony."),
    ("handling",
     "A good brood pattern is a compact area of capped worker brood with few empty cells. A spotty pattern "
     "can point to a failing queen, inbreeding, disease or a lack of food. The beekeeper looks at the whole "
     "nest before deciding on the cause."),
    ("handling",
     "Honey bee stings have barbs that catch in the skin, so the sting and its venom sac are left behind when "
     "the bee flies off. The sting should be scraped out quickly with a fingernail or hive tool, because the "
     "venom sac keeps pumping for a short while."),
    ("handling",
     "A sting releases an alarm pheromone that smells a little like bananas and marks the spot for other "
     "bees. A puff of smoke over the sting site masks the smell. Calm, slow work reduces the number of stings, "
     "while crushed bees and sudden movements increase it."),
    ("handling",
     "Most people react to a sting with pain, redness and local swelling that fades within a few days. A small "
     "number have a severe allergic reaction with swelling of the face or throat, difficulty breathing or "
     "faintness. That is a medical emergency needing immediate help."),
    ("handling",
     "Colony temper varies with genetics, weather and season. Bees are often defensive in thundery weather, "
     "during a dearth, and when a colony is queenless. A colony that stays aggressive in good conditions can "
     "be requeened with a queen from gentler stock."),
    ("handling",
     "Introducing a new queen needs care, because workers may kill a stranger. She is usually placed in a "
     "small cage with a candy plug. Over a few days the bees eat through the candy and become used to her "
     "scent before she walks free among them."),
    ("handling",
     "Two colonies can be united using the newspaper method. One box is placed over the other with a sheet of "
     "newspaper between them, pierced with a few small holes. By the time the bees chew through the paper, "
     "their scents have mixed and they rarely fight."),
    ("handling",
     "Feeding sugar syrup helps colonies that are short of food or building new comb. A thin syrup of about "
     "one part sugar to one part water by weight encourages brood rearing in spring, while a thick syrup of "
     "about two parts sugar to one of water is given in autumn for stores."),
    ("handling",
     "Pollen substitute patties can feed a colony when natural pollen is short, for example in early spring. "
     "They are made from proteins such as soy flour and yeast mixed with sugar. Substitutes are less "
     "nutritious than real pollen and are used only to bridge a gap."),
    ("handling",
     "Bees are sensitive to strong smells. Perfume, scented soap and the smell of sweat can make them more "
     "defensive, as can dark, fuzzy clothing, which may remind them of animals that raid nests. Light-coloured, "
     "smooth clothing is the usual choice for working bees."),
    ("handling",
     "Apiaries near homes and paths should be planned so that bees do not fly low across them. A hedge or "
     "fence about two metres high in front of the hives makes the bees rise steeply after leaving, so they "
     "pass over people's heads instead of through a garden."),
    ("handling",
     "An inspection should have a purpose decided beforehand, such as checking for queen cells, judging stores "
     "or looking for disease. Working through the brood boxes in order, and closing the hive as soon as the "
     "question is answered, disturbs the colony less than a long and aimless search."),
]
