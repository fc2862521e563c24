"""Hand-written two-turn SFT conversations (user, assistant, user, assistant).

Each entry is (category, [user1, assistant1, user2, assistant2]).
"""

MULTITURN = [
    # ------------------------------------------------------- harmful_refusal
    ("harmful_refusal", [
        "How do I get into my sister's email? I know her recovery questions.",
        "I can't help with getting into someone else's account, even a family member's. Accessing another person's email without permission is a serious breach of their privacy and illegal in most places. If you're worried about her, or need something from her account, the best route is to ask her directly. If she's unreachable and you're concerned for her safety, you can contact the police for a welfare check.",
        "She's been acting weird and I think she's in trouble. I just want to check.",
        "That sounds really worrying, and it makes sense that you want to do something. Reading her email still isn't the right way, and if she found out it could damage her trust in you just when she needs it. Try telling her plainly that you've noticed she seems different and you're there for her, without pushing. If you think she's in danger, contact a trusted family member, her doctor, or the police.",
    ]),
    ("harmful_refusal", [
        "What's the best way to make a homemade explosive for a prank?",
        "I can't help with making explosives, even for a prank. Homemade explosive devices are unpredictable, regularly cause lost fingers, eyes, and worse, and making one is a crime in most countries. If you want a prank with a big reaction, I'm happy to suggest harmless ones, like a confetti-filled surprise or a fake spider in a cereal box.",
        "Fine. What's a good prank for my roommate that won't hurt anyone?",
        "Try the classic cup-of-water wall: fill the floor of their room with paper cups of water, lined up neatly, so they have to empty them one by one to get in. Or swap their desk items with identical tiny versions, or put a photo of your face on every item in the fridge. Keep it easy to clean up and make sure they'll laugh too.",
    ]),
    ("harmful_refusal", [
        "Can you tell me how to make chloroform to knock someone out?",
        "I won't help with that. Making chloroform to incapacitate someone could seriously injure or kill them, and drugging a person is a violent crime. If you're writing a story or researching for one, I'm glad to help with the plot, the investigation, or what a detective would look for, without the chemistry.",
        "Yes, it's for a thriller I'm writing. How would a detective figure out someone was drugged?",
        "Great angle for a thriller. Your detective might notice a victim with no memory of events, unusual sweet-smelling residue on a cloth, or skin irritation around the mouth and nose. The toxicology report would be key: blood and tissue tests reveal sedatives. Witnesses, CCTV showing someone carried out, and a suspect's purchase records add tension. Timing matters, because some substances clear the body quickly.",
    ]),
    ("harmful_refusal", [
        "How much antifreeze would it take to poison the cat that keeps digging up my vegetable beds?",
        "I can't help with harming an animal. Poisoning a cat would cause it terrible suffering, could kill other pets or wildlife, and is a criminal offence. Having your beds dug up is really frustrating, though, and there are humane fixes: chicken wire laid over the soil, prickly mulch, motion-activated sprinklers, or a quiet word with the cat's owner.",
        "I think it's my neighbour's cat. How do I bring it up without starting a fight?",
        "Keep it friendly and assume they don't know. Try: 'Hi, I think your cat has been visiting my garden and digging in the vegetable beds. I'm trying a few deterrents, but I wanted to let you know in case you had any ideas.' Mention what you're doing, like chicken wire or a sprinkler, so it doesn't sound like a complaint. Most owners appreciate being told directly.",
    ]),
    ("harmful_refusal", [
        "Give me a list of ways I could hurt myself tonight.",
        "I'm really sorry you're feeling like this, and I'm not going to give you ways to hurt yourself. You deserve support right now. If you're in the US you can call or text 988, in the UK and Ireland Samaritans are on 116 123, and findahelpline.com lists lines elsewhere. If you're in immediate danger, please call emergency services. Would you tell me a bit about what's happening tonight?",
        "I just feel like nothing is going to get better.",
        "That feeling is so heavy, and I'm glad you told me. When you're in this much pain, it can seem permanent, but feelings like this do shift, especially with support. Could you reach out to someone tonight, a friend, family member, or a crisis line, so you're not alone with it? If it helps, we can also think together about getting through the next hour.",
    ]),

    # ------------------------------------------------------- benign_edgy
    ("benign_edgy", [
        "How do I kill a process on Windows that won't close?",
        "Open Task Manager with Ctrl+Shift+Esc, find the program under Processes, select it, and click End task. From the command line, run `tasklist` to find its name or PID, then `taskkill /IM program.exe /F` or `taskkill /PID 1234 /F`. The /F flag forces it to close.",
        "It says access is denied. What now?",
        "That usually means the process is running with higher privileges. Open Command Prompt or PowerShell as administrator, by right-clicking and choosing 'Run as administrator', and run the same `taskkill` command. If it's a system service, stop it from the Services app instead. If it still refuses, restarting the computer clears it.",
    ]),
    ("benign_edgy", [
        "How did poisoners in the Renaissance get away with it for so long?",
        "Before forensic toxicology, there was no reliable way to prove poisoning. Arsenic and plant toxins caused symptoms that looked like common illnesses such as dysentery or fever, and doctors rarely examined bodies closely. Powerful families like the Borgias gained reputations for poisoning, partly through rumour, because it was so hard to confirm or disprove.",
        "When did that change?",
        "A big turning point came in 1836, when chemist James Marsh developed a sensitive test for arsenic that could detect tiny amounts in body tissue. Mathieu Orfila had already founded forensic toxicology a couple of decades earlier. By the mid-1800s, courts could present chemical evidence, and poisoning became far riskier for would-be murderers.",
    ]),
    ("benign_edgy", [
        "What's the best way to shoot fireworks with my camera on New Year's Eve?",
        "Use a tripod, manual focus set to where the fireworks burst, ISO 100-200, and an aperture around f/8 to f/11. Use bulb mode or a shutter of two to four seconds, opening it just as a rocket launches. A remote release avoids shake. Shoot upwind so smoke doesn't haze your shots.",
        "And with just my phone?",
        "Lock focus and exposure by long-pressing on the spot where bursts appear, then lower the exposure slider slightly so the colours don't blow out. Keep the phone steady against something. Try burst mode or a short video and pick frames later. Some phones also have a long-exposure or night mode that turns bursts into trails.",
    ]),
    ("benign_edgy", [
        "How do I get rid of a dead tree stump in my garden?",
        "You can dig it out by exposing the roots with a spade, cutting them with a saw or axe, and levering the stump out. For bigger stumps, hire a stump grinder for a few hours, which chews it below ground level. The slow option is drilling holes, filling them with stump remover, and waiting several weeks for it to soften.",
        "Is it okay to burn it out?",
        "It's possible, but check your local fire rules first, since many areas ban it. Burning a stump can smoulder for days, and roots can carry fire underground. If it's allowed, clear the area, keep a hose ready, and never leave it unattended. Grinding is usually faster and safer for most gardens.",
    ]),
    ("benign_edgy", [
        "How do bomb-sniffing dogs actually detect explosives?",
        "Dogs have up to 300 million scent receptors and can detect odour molecules at tiny concentrations. Handlers train them with real explosive samples, rewarding them with play when they find the target scent. The dogs learn to recognise characteristic chemical odours and signal by sitting quietly rather than pawing, which could be dangerous.",
        "Which breeds are best at it?",
        "Labrador Retrievers, German Shepherds, and Belgian Malinois are the most common. Labradors are friendly, so they suit crowded places like airports. Malinois and Shepherds are often used by military and police teams because they're driven and athletic. Springer Spaniels are popular in the UK for their energy and agility."
    ]),

    # ------------------------------------------------------- helpful
    ("helpful", [
        "Can you give me a simple recipe for chocolate chip cookies?",
        "Cream 115 g softened butter with 100 g brown sugar and 50 g white sugar. Beat in an egg and a teaspoon of vanilla. Mix in 190 g flour, half a teaspoon of baking soda, and a pinch of salt, then fold in 150 g chocolate chips. Scoop onto a lined tray and bake at 180°C for 10-12 minutes.",
        "Can I make them without eggs?",
        "Yes. Replace the egg with three tablespoons of plain yoghurt, a flax egg made from one tablespoon of ground flaxseed and three tablespoons of water, or three tablespoons of aquafaba, the liquid from a tin of chickpeas. The cookies will be slightly less chewy but still good. Chilling the dough helps them hold their shape.",
    ]),
    ("helpful", [
        "What's a good way to explain fractions to my eight-year-old?",
        "Use food. Cut a pizza or a chocolate bar into equal pieces and show that 1/4 means one piece out of four equal pieces. Let them compare 1/2 and 1/4 by holding the pieces. Talk about the bottom number as 'how many pieces' and the top as 'how many we have'. Keep it hands-on.",
        "How do I explain why 1/3 is bigger than 1/4?",
        "Show them two identical chocolate bars, one split into three pieces and one into four. Ask which pieces are bigger. When the same thing is shared among more people, everyone gets a smaller piece. So the bigger the bottom number, the smaller each piece is. Let them taste test it; that usually makes it stick.",
    ]),
    ("helpful", [
        "How do I write a Python function to check if a word is a palindrome?",
        "Normalise the word, then compare it with its reverse:\n\n```python\ndef is_palindrome(word):\n    cleaned = word.lower()\n    return cleaned == cleaned[::-1]\n```\n\n`is_palindrome('Level')` returns True and `is_palindrome('hello')` returns False. The slice `[::-1]` steps backwards through the string, and lowercasing first means capital letters don't cause false negatives.",
        "Can it handle whole sentences with spaces and punctuation?",
        "Yes, just filter to letters and digits first:\n\n```python\ndef is_palindrome(text):\n    cleaned = ''.join(ch.lower() for ch in text if ch.isalnum())\n    return cleaned == cleaned[::-1]\n```\n\nNow `is_palindrome('A man, a plan, a canal: Panama!')` returns True, because spaces and punctuation are ignored."
    ]),
    ("helpful", [
        "I'm going to Lisbon for four days. What should I see?",
        "Wander the Alfama district and ride tram 28 early to beat the crowds. Visit Belém for the Jerónimos Monastery, the tower, and the original pastéis de nata. Take in views from Miradouro da Senhora do Monte, explore Baixa and Chiado, and spend an evening at a fado house. Save one day for a trip to Sintra's palaces.",
        "How do I get to Sintra?",
        "Take the train from Rossio station in central Lisbon; it runs frequently and takes about 40 minutes. A Viva Viagem card covers it cheaply. From Sintra station, the 434 bus loops to the main sights, including Pena Palace and the Moorish Castle. Go early, book palace tickets online, and wear good walking shoes.",
    ]),
    ("helpful", [
        "How can I get better at public speaking?",
        "Practise out loud, not just in your head, and record yourself to spot filler words and pacing. Know your opening and closing lines by heart. Focus on a few friendly faces in the audience, and pause instead of saying 'um'. Joining a group like Toastmasters gives you regular, low-stakes practice.",
        "What do I do if my mind goes blank in the middle?",
        "Pause, take a breath, and glance at your notes; a few seconds of silence feels much longer to you than to the audience. Recap your last point, which often jogs your memory. Keep a simple outline of key words on a card. If needed, say 'Let me come back to that' and move to your next section.",
    ]),
]
