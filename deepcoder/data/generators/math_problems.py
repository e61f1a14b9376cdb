"""Math and reasoning word problems generated from a seed, with exact answers computed by code.

Every family makes a problem at difficulty 1, 2 or 3 from a ``random.Random``. The answer is
computed exactly here (integers, ``Fraction`` for money, ``datetime`` for calendars) and the
task also carries a short, independent Python program that prints the same answer: the
reference teacher runs it with the python tool, and the tests run it in the sandbox.

Answers are chosen so that ``grading.check`` (which compares the *last number* of the answer)
grades them exactly:

* ``integer``: a whole number;
* ``decimal2``: money with exactly 2 decimal places, as the prompt asks (the generator redraws
  parameters whose exact value is a rounding tie, so "nearest cent" is never ambiguous);
* ``yyyymmdd``: a date written as the 8-digit number YYYYMMDD (an ISO date such as 2024-01-31
  would be read as its last number, -31, so only the day would be checked);
* ``iso_weekday``: a day of the week as its ISO number, Monday = 1 to Sunday = 7.

Train and heldout never share a problem: each problem has a key (its family, level and the
parameters that decide the answer) and belongs to heldout exactly when ``in_heldout(key)``;
a draw that lands in the other split, or repeats a problem already generated, is redrawn.
"""

from __future__ import annotations

import math
import random
import string
from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta
from fractions import Fraction
from functools import lru_cache
from typing import Callable, Literal

from deepcoder.agent.types import Task
from deepcoder.data.generators import in_heldout

Split = Literal["train", "heldout"]
AnswerFormat = Literal["integer", "decimal2", "yyyymmdd", "iso_weekday"]

HELDOUT_SEED_OFFSET = 10**6  # instance n of heldout draws from seed 10**6 + n, train from n
MAX_ATTEMPTS = 2000

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
NAMES = ("Ana", "Ben", "Chen", "Dara", "Eli", "Farah", "Goran", "Hana", "Ivan", "Jun", "Kofi", "Lena",
         "Mateo", "Nora", "Omar", "Priya")
ITEMS = (("notebook", "notebooks"), ("pen", "pens"), ("mug", "mugs"), ("sandwich", "sandwiches"),
         ("candle", "candles"), ("towel", "towels"), ("ticket", "tickets"), ("plant", "plants"),
         ("battery", "batteries"), ("scarf", "scarves"))
DATE_FORMAT_HINT = ("Write the date as the 8-digit number YYYYMMDD (four-digit year, two-digit month, "
                    "two-digit day, no separators).")
WEEKDAY_HINT = "Answer with its ISO weekday number (Monday = 1, Tuesday = 2, ..., Sunday = 7)."
MONEY_HINT = "Give the answer with exactly 2 decimal places."
MONEY_PRINT = 'print(f"{cents // 100}.{cents % 100:02d}")'


@dataclass(frozen=True)
class Problem:
    """One generated problem. ``key`` identifies it: same key, same problem (whatever the wording)."""

    prompt: str
    answer: str
    reference: str
    key: str
    answer_format: AnswerFormat = "integer"


@dataclass(frozen=True)
class Family:
    """A kind of problem, with its topic and the answer formats it produces."""

    name: str
    topic: str
    formats: tuple[AnswerFormat, ...]
    make: Callable[[random.Random, int], Problem]


# --------------------------------------------------------------------------------------------
# Small helpers


def _join(parts: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def _say(d: date) -> str:
    """A date in words ('3 March 2021'), never ambiguous between day and month."""
    return f"{d.day} {MONTHS[d.month - 1]} {d.year}"


def _code(d: date) -> str:
    return f"date({d.year}, {d.month}, {d.day})"


def _random_date(rng: random.Random, first_year: int, last_year: int, max_day: int = 31) -> date:
    while True:
        d = date.fromordinal(rng.randint(date(first_year, 1, 1).toordinal(), date(last_year, 12, 31).toordinal()))
        if d.day <= max_day:
            return d


def _bounded_compositions(total: int, parts: int, low: int, high: int) -> int:
    """Ways to write total as an ordered sum of `parts` integers, each in [low, high]
    (inclusion-exclusion over the parts that exceed high)."""
    spare, width = total - parts * low, high - low + 1
    count = 0
    for over in range(parts + 1):
        rest = spare - over * width
        if rest < 0:
            break
        count += (-1) ** over * math.comb(parts, over) * math.comb(rest + parts - 1, parts - 1)
    return count


@lru_cache(maxsize=1)
def _primes_below(limit: int = 20_000) -> tuple[int, ...]:
    sieve = bytearray([1]) * limit
    sieve[0:2] = b"\x00\x00"
    for p in range(2, math.isqrt(limit - 1) + 1):
        if sieve[p]:
            sieve[p * p::p] = bytes(len(range(p * p, limit, p)))
    return tuple(i for i, flag in enumerate(sieve) if flag)


def _factorize(n: int) -> dict[int, int]:
    factors: dict[int, int] = {}
    p = 2
    while p * p <= n:
        while n % p == 0:
            factors[p] = factors.get(p, 0) + 1
            n //= p
        p += 1
    if n > 1:
        factors[n] = factors.get(n, 0) + 1
    return factors


def _count_multiples(low: int, high: int, d: int) -> int:
    return high // d - (low - 1) // d


IS_PRIME_CODE = ("import math\n\n\ndef is_prime(n):\n"
                 "    return n > 1 and all(n % d for d in range(2, math.isqrt(n) + 1))\n\n\n")


# --------------------------------------------------------------------------------------------
# Arithmetic


def shopping_change(rng: random.Random, level: int) -> Problem:
    """Change from a purchase; level 3 adds a percentage discount (always a whole number of cents)."""
    n_items = {1: 1, 2: rng.randint(2, 3), 3: 3}[level]
    while True:
        chosen = rng.sample(ITEMS, n_items)
        counts = [rng.randint(2, 9) for _ in chosen]
        prices = [rng.randint(5, 199) * 5 for _ in chosen]  # cents, 0.25 to 9.95
        discount = rng.choice((10, 15, 20, 25)) if level == 3 else 0
        total = sum(c * p for c, p in zip(counts, prices))
        if total * discount % 100 == 0:
            break
    total -= total * discount // 100
    paid = (total // 2000 + 1) * 2000  # the next multiple of $20 above the total
    name = rng.choice(NAMES)
    bought = _join([f"{c} {plural} at ${_money(p)} each" for c, p, (_, plural) in zip(counts, prices, chosen)])
    off = f" The shop takes {discount}% off the whole bill." if discount else ""
    prompt = (f"{name} buys {bought}.{off} {name} pays with ${paid // 100}. How much change, in dollars, "
              f"does {name} get? {MONEY_HINT}")
    reference = "\n".join([
        f"prices = {prices}  # in cents",
        f"counts = {counts}",
        "total = sum(p * c for p, c in zip(prices, counts))",
        f"total -= total * {discount} // 100  # the discount",
        f"cents = {paid} - total",
        MONEY_PRINT,
    ])
    key = f"shopping_change:{level}:{sorted(zip(counts, prices))}:{discount}"
    return Problem(prompt, _money(paid - total), reference, key, "decimal2")


def compound_interest(rng: random.Random, level: int) -> Problem:
    """Balance after compound interest, to the cent; exact (Fraction) and never a rounding tie."""
    while True:
        principal = rng.randint(2, 200) * 50
        if level == 1:
            rate, years, per_year = rng.randint(1, 9) * 10, rng.randint(2, 5), 1  # rate in tenths of %
        elif level == 2:
            rate, years, per_year = rng.randint(10, 99), rng.randint(3, 15), 1
        else:
            rate, years, per_year = rng.randint(10, 99), rng.randint(1, 10), 12
        cents = principal * 100 * (1 + Fraction(rate, 1000 * per_year)) ** (years * per_year)
        if abs(cents - math.floor(cents) - Fraction(1, 2)) > Fraction(1, 10**6):
            break
    rate_text = f"{rate // 10}" if rate % 10 == 0 else f"{rate // 10}.{rate % 10}"
    if per_year == 1:
        how = f"earns {rate_text}% interest per year, compounded yearly"
    else:
        how = f"earns interest at an annual rate of {rate_text}%, compounded monthly (each month adds {rate_text}/12 %)"
    prompt = (f"A deposit of ${principal} {how}. No money is added or taken out. What is the balance after "
              f"{_plural(years, 'year')}, in dollars, rounded to the nearest cent? {MONEY_HINT}")
    reference = "\n".join([
        "from fractions import Fraction",
        "",
        f"balance = {principal} * (1 + Fraction({rate}, {1000 * per_year})) ** {years * per_year}",
        "cents = int(balance * 100 + Fraction(1, 2))  # round to the nearest cent",
        MONEY_PRINT,
    ])
    key = f"compound_interest:{level}:{principal}:{rate}:{years}:{per_year}"
    return Problem(prompt, _money(math.floor(cents + Fraction(1, 2))), reference, key, "decimal2")


def missing_average(rng: random.Random, level: int) -> Problem:
    """Reasoning backwards from an average: a missing value, or the score that moved the average."""
    if level < 3:
        n = rng.randint(4, 6) if level == 1 else rng.randint(6, 9)
        low, high = (10, 99) if level == 1 else (50, 500)
        while True:
            known = [rng.randint(low, high) for _ in range(n - 1)]
            mean = rng.randint(low, high)
            missing = n * mean - sum(known)
            if low <= missing <= high:
                break
        prompt = (f"The average of {n} numbers is {mean}. {n - 1} of them are {_join([str(k) for k in known])}. "
                  "What is the remaining number?")
        reference = f"known = {known}\nprint({n} * {mean} - sum(known))"
        return Problem(prompt, str(missing), reference, f"missing_average:{level}:{n}:{mean}:{sorted(known)}")
    while True:
        n, before = rng.randint(5, 30), rng.randint(50, 95)
        after = before + rng.choice((-3, -2, -1, 1, 2, 3))
        score = (n + 1) * after - n * before
        if 0 <= score <= 100:
            break
    prompt = (f"A student's average score over {n} tests is {before}. After one more test the average is "
              f"{after}. Scores are out of 100. What did the student score on the new test?")
    reference = f"tests, before, after = {n}, {before}, {after}\nprint((tests + 1) * after - tests * before)"
    return Problem(prompt, str(score), reference, f"missing_average:3:{n}:{before}:{after}")


# --------------------------------------------------------------------------------------------
# Combinatorics


def committee(rng: random.Random, level: int) -> Problem:
    """Choosing committees: plain, from two groups, and with an 'at least one' condition."""
    group = rng.choice(("club", "choir", "chess club", "volunteer group", "class"))
    if level == 1:
        n = rng.randint(6, 80)
        k = rng.randint(2, min(10, n - 2))
        prompt = (f"A {group} has {n} members. In how many ways can a committee of {k} members be chosen? "
                  "(The order of choosing does not matter.)")
        return Problem(prompt, str(math.comb(n, k)), f"import math\n\nprint(math.comb({n}, {k}))",
                       f"committee:1:{n}:{k}")
    if level == 2:
        women, men = rng.randint(4, 20), rng.randint(4, 20)
        kw, km = rng.randint(1, min(5, women - 1)), rng.randint(1, min(5, men - 1))
        prompt = (f"A {group} has {women} women and {men} men. In how many ways can a committee of "
                  f"{kw} {'woman' if kw == 1 else 'women'} and {km} {'man' if km == 1 else 'men'} "
                  "be chosen?")
        answer = math.comb(women, kw) * math.comb(men, km)
        return Problem(prompt, str(answer), f"import math\n\nprint(math.comb({women}, {kw}) * math.comb({men}, {km}))",
                       f"committee:2:{women}:{men}:{kw}:{km}")
    women, men = rng.randint(2, 15), rng.randint(3, 15)
    k = rng.randint(2, min(7, men))
    prompt = (f"A {group} has {women} women and {men} men. In how many ways can a committee of {k} people be "
              "chosen if it must include at least one woman?")
    answer = math.comb(women + men, k) - math.comb(men, k)
    reference = (f"import math\n\n# all committees minus those with no woman\n"
                 f"print(math.comb({women + men}, {k}) - math.comb({men}, {k}))")
    return Problem(prompt, str(answer), reference, f"committee:3:{women}:{men}:{k}")


def letter_arrangements(rng: random.Random, level: int) -> Problem:
    """Codes and rearrangements of letters; level 3 keeps a repeated letter together."""
    if level == 1:
        letters, k = rng.randint(5, 26), rng.randint(2, 8)
        digits, repeat = rng.choice((0, 10)), rng.random() < 0.5
        n = letters + digits
        if not repeat and k > n:
            k = n
        pool = f"the {letters} letters A to {string.ascii_uppercase[letters - 1]}"
        pool += " and the 10 digits 0 to 9" if digits else ""
        rule = "symbols may be repeated" if repeat else "no symbol may be used twice"
        prompt = (f"How many {k}-symbol codes can be made from {pool} if {rule}? "
                  "(Order matters: AB and BA are different codes.)")
        answer = n**k if repeat else math.perm(n, k)
        reference = f"print({n} ** {k})" if repeat else f"import math\n\nprint(math.perm({n}, {k}))"
        return Problem(prompt, str(answer), reference, f"letter_arrangements:1:{letters}:{digits}:{k}:{repeat}")
    if level == 2:
        length = rng.randint(6, 10)
        letters = rng.sample(string.ascii_uppercase, rng.randint(2, length - 1))
        chars = letters + [rng.choice(letters) for _ in range(length - len(letters))]
        rng.shuffle(chars)
        word = "".join(chars)
        answer = math.factorial(length)
        for count in Counter(word).values():
            answer //= math.factorial(count)
        prompt = f"How many different strings can be made by rearranging all the letters of {word}?"
        reference = "\n".join([
            "import math",
            "from collections import Counter",
            "",
            f'word = "{word}"',
            "total = math.factorial(len(word))",
            "for count in Counter(word).values():",
            "    total //= math.factorial(count)",
            "print(total)",
        ])
        return Problem(prompt, str(answer), reference, f"letter_arrangements:2:{word}")
    block = rng.choice(string.ascii_uppercase)
    copies = rng.randint(2, 3)
    others = rng.sample([c for c in string.ascii_uppercase if c != block], rng.randint(2, 4))
    chars = [block] * copies + [rng.choice(others) for _ in range(rng.randint(5, 8) - copies)]
    rng.shuffle(chars)
    word = "".join(chars)
    rest = Counter(c for c in word if c != block)
    answer = math.factorial(sum(rest.values()) + 1)  # the block of copies counts as one symbol
    for count in rest.values():
        answer //= math.factorial(count)
    prompt = (f"How many different rearrangements of all the letters of {word} keep all {copies} copies of the "
              f"letter {block} next to each other?")
    reference = "\n".join([
        "from itertools import permutations",
        "",
        f'word = "{word}"',
        f'print(len({{p for p in permutations(word) if "{block * copies}" in "".join(p)}}))',
    ])
    return Problem(prompt, str(answer), reference, f"letter_arrangements:3:{word}")


def dice_sums(rng: random.Random, level: int) -> Problem:
    """Counting dice outcomes with a given total (exactly, or at least)."""
    if level == 1:
        dice, sides, compare = 2, rng.randint(4, 20), rng.choice(("exactly", "at most"))
    elif level == 2:
        dice, sides, compare = rng.randint(3, 4), rng.randint(4, 12), rng.choice(("exactly", "at most"))
    else:
        dice, sides, compare = rng.randint(4, 6), rng.choice((6, 8, 10, 12)), rng.choice(("at least", "at most"))
    target = rng.randint(dice, dice * sides - (compare != "exactly"))
    totals = {"exactly": [target], "at most": range(dice, target + 1),
              "at least": range(target, dice * sides + 1)}[compare]
    answer = sum(_bounded_compositions(t, dice, 1, sides) for t in totals)
    prompt = (f"{dice} fair {sides}-sided dice (faces numbered 1 to {sides}) are rolled. Of the {sides ** dice} "
              f"equally likely ordered outcomes, how many have a total of {compare} {target}?")
    final = {"exactly": f"print(ways[{target}])",
             "at most": f"print(sum(count for total, count in ways.items() if total <= {target}))",
             "at least": f"print(sum(count for total, count in ways.items() if total >= {target}))"}[compare]
    reference = "\n".join([
        "ways = {0: 1}  # total -> number of ordered outcomes",
        f"for _ in range({dice}):",
        "    rolled = {}",
        "    for total, count in ways.items():",
        f"        for face in range(1, {sides + 1}):",
        "            rolled[total + face] = rolled.get(total + face, 0) + count",
        "    ways = rolled",
        final,
    ])
    return Problem(prompt, str(answer), reference, f"dice_sums:{level}:{dice}:{sides}:{compare}:{target}")


def candy_distribution(rng: random.Random, level: int) -> Problem:
    """Identical items to distinct people (stars and bars), with lower and upper bounds."""
    if level == 1:
        candies, children = rng.randint(3, 60), rng.randint(2, 8)
        low, high, rule = 0, candies, "Some children may get none."
    elif level == 2:
        children = rng.randint(2, 8)
        candies = rng.randint(max(5, children), 60)
        low, high, rule = 1, candies, "Every child must get at least one."
    else:
        while True:
            children, candies = rng.randint(3, 6), rng.randint(10, 30)
            high = rng.randint(-(-candies // children), candies - children)  # the cap must bite
            if candies >= 2 * children and high < candies - children + 1:
                break
        low, rule = 1, f"Every child must get at least one and at most {high}."
    answer = _bounded_compositions(candies, children, low, high)
    prompt = (f"In how many ways can {candies} identical candies be shared among {children} different children, "
              f"giving out all the candies? {rule}")
    reference = "\n".join([
        f"candies, children, low, high = {candies}, {children}, {low}, {high}",
        "ways = [1] + [0] * candies  # ways[t]: ways to hand out t candies to the children so far",
        "for _ in range(children):",
        "    ways = [sum(ways[t - c] for c in range(low, min(high, t) + 1)) for t in range(candies + 1)]",
        "print(ways[candies])",
    ])
    return Problem(prompt, str(answer), reference, f"candy_distribution:{level}:{candies}:{children}:{high}")


# --------------------------------------------------------------------------------------------
# Number theory


def gcd_lcm(rng: random.Random, level: int) -> Problem:
    """Tiles (gcd), buses meeting again (lcm), and remainders (Chinese remainder theorem)."""
    if level == 1:
        g = rng.randint(2, 40)
        a, b = g * rng.randint(2, 25), g * rng.randint(2, 25)
        prompt = (f"A rectangular floor measures {a} cm by {b} cm. What is the side length, in cm, of the largest "
                  "square tile that can cover the floor exactly, without cutting any tile?")
        return Problem(prompt, str(math.gcd(a, b)), f"import math\n\nprint(math.gcd({a}, {b}))",
                       f"gcd_lcm:1:{sorted((a, b))}")
    if level == 2:
        a, b, c = rng.sample(range(4, 46), 3)
        prompt = (f"Three buses leave a station together. They leave every {a}, {b} and {c} minutes respectively. "
                  "After how many minutes do all three next leave the station together?")
        return Problem(prompt, str(math.lcm(a, b, c)), f"import math\n\nprint(math.lcm({a}, {b}, {c}))",
                       f"gcd_lcm:2:{sorted((a, b, c))}")
    while True:
        moduli = rng.sample(range(3, 24), 3)
        if all(math.gcd(x, y) == 1 for i, x in enumerate(moduli) for y in moduli[i + 1:]):
            break
    remainders = [rng.randint(0, m - 1) for m in moduli]
    n, step = 1, 1
    for m, r in zip(moduli, remainders):  # keep the earlier conditions true while meeting this one
        while n % m != r:
            n += step
        step = math.lcm(step, m)
    conditions = [f"a remainder of {r} when divided by {m}" for m, r in zip(moduli, remainders)]
    prompt = f"What is the smallest positive integer that leaves {_join(conditions)}?"
    test = " and ".join(f"n % {m} == {r}" for m, r in zip(moduli, remainders))
    reference = f"n = 1\nwhile not ({test}):\n    n += 1\nprint(n)"
    return Problem(prompt, str(n), reference, f"gcd_lcm:3:{sorted(zip(moduli, remainders))}")


def modular_power(rng: random.Random, level: int) -> Problem:
    """Remainders of large powers (fast modular exponentiation)."""
    if level == 1:
        a, b, m = rng.randint(2, 20), rng.randint(2, 12), rng.randint(3, 50)
    elif level == 2:
        a, b, m = rng.randint(2, 99), rng.randint(10, 5000), rng.randint(7, 1000)
    else:
        a, b, digits = rng.randint(2, 999), rng.randint(10**6, 10**12), rng.randint(3, 6)
        while a % 10 == 0:
            a = rng.randint(2, 999)
        prompt = (f"What number do the last {digits} digits of {a} to the power {b} form? "
                  "(Drop any leading zeros.)")
        return Problem(prompt, str(pow(a, b, 10**digits)), f"print(pow({a}, {b}, 10 ** {digits}))",
                       f"modular_power:3:{a}:{b}:{digits}")
    prompt = f"What is the remainder when {a} to the power {b} is divided by {m}?"
    return Problem(prompt, str(pow(a, b, m)), f"print(pow({a}, {b}, {m}))", f"modular_power:{level}:{a}:{b}:{m}")


def divisors(rng: random.Random, level: int) -> Problem:
    """Divisor counts and sums, and Euler's totient, from the prime factorisation."""
    if level == 1:
        n = rng.randint(12, 1000)
        answer = math.prod(e + 1 for e in _factorize(n).values())
        prompt = f"How many positive divisors does {n} have?"
        reference = f"print(sum(1 for d in range(1, {n} + 1) if {n} % d == 0))"
    elif level == 2:
        n = rng.randint(100, 100_000)
        answer = math.prod((p ** (e + 1) - 1) // (p - 1) for p, e in _factorize(n).items())
        prompt = f"What is the sum of all positive divisors of {n}, including 1 and {n} itself?"
        reference = f"print(sum(d for d in range(1, {n} + 1) if {n} % d == 0))"
    else:
        n = rng.randint(1000, 1_000_000)
        answer = n
        for p in _factorize(n):
            answer = answer // p * (p - 1)
        prompt = f"How many integers from 1 to {n} have no common factor greater than 1 with {n}?"
        reference = f"import math\n\nprint(sum(1 for k in range(1, {n} + 1) if math.gcd(k, {n}) == 1))"
    return Problem(prompt, str(answer), reference, f"divisors:{level}:{n}")


def divisible_count(rng: random.Random, level: int) -> Problem:
    """Counting multiples in a range, with inclusion-exclusion."""
    low = rng.randint(1, 100)
    high = low + rng.randint(50, 1000 if level < 3 else 100_000)
    p, q, r = rng.sample(range(2, 16), 3)
    c = lambda d: _count_multiples(low, high, d)  # noqa: E731
    if level == 1:
        answer, rule, test = c(p), f"divisible by {p}", f"n % {p} == 0"
        key = f"{p}"
    elif level == 2:
        answer = c(p) + c(q) - c(math.lcm(p, q))
        rule, test, key = f"divisible by {p} or by {q} (or both)", f"n % {p} == 0 or n % {q} == 0", f"{sorted((p, q))}"
    else:
        either = c(p) + c(q) - c(math.lcm(p, q))
        with_r = c(math.lcm(p, r)) + c(math.lcm(q, r)) - c(math.lcm(p, q, r))
        answer = either - with_r
        rule = f"divisible by {p} or by {q}, but not by {r}"
        test, key = f"(n % {p} == 0 or n % {q} == 0) and n % {r} != 0", f"{sorted((p, q))}:{r}"
    prompt = f"How many integers from {low} to {high} inclusive are {rule}?"
    reference = f"print(sum(1 for n in range({low}, {high} + 1) if {test}))"
    return Problem(prompt, str(answer), reference, f"divisible_count:{level}:{low}:{high}:{key}")


def primes(rng: random.Random, level: int) -> Problem:
    """Counting, indexing and summing primes."""
    table = _primes_below()
    if level == 1:
        low = rng.randint(1, 150)
        high = low + rng.randint(20, 150)
        answer = sum(1 for p in table if low <= p <= high)
        prompt = f"How many prime numbers are there from {low} to {high} inclusive?"
        reference = IS_PRIME_CODE + f"print(sum(1 for n in range({low}, {high} + 1) if is_prime(n)))"
        key = f"{low}:{high}"
    elif level == 2:
        index = rng.randint(20, 1000)
        answer = table[index - 1]
        prompt = f"What is the {_ordinal(index)} prime number? (The 1st prime is 2, the 2nd is 3.)"
        reference = IS_PRIME_CODE + (f"count, n = 0, 1\nwhile count < {index}:\n"
                                     "    n += 1\n    count += is_prime(n)\nprint(n)")
        key = f"{index}"
    else:
        limit = rng.randint(1000, 20_000)
        answer = sum(p for p in table if p < limit)
        prompt = f"What is the sum of all prime numbers less than {limit}?"
        reference = IS_PRIME_CODE + f"print(sum(n for n in range(2, {limit}) if is_prime(n)))"
        key = f"{limit}"
    return Problem(prompt, str(answer), reference, f"primes:{level}:{key}")


# --------------------------------------------------------------------------------------------
# Dates


def days_between(rng: random.Random, level: int) -> Problem:
    """Day counts between dates (within a year, across years), and working days in a range."""
    if level == 1:
        year = rng.randint(1950, 2050)
        first, second = sorted(rng.sample(range(date(year, 1, 1).toordinal(), date(year, 12, 31).toordinal() + 1), 2))
        start, end = date.fromordinal(first), date.fromordinal(second)
    else:
        start = _random_date(rng, 1900, 2079)
        end = start + timedelta(days=rng.randint(200, 7300) if level == 2 else rng.randint(10, 400))
    if level < 3:
        prompt = f"How many days after {_say(start)} is {_say(end)}?"
        reference = f"from datetime import date\n\nprint(({_code(end)} - {_code(start)}).days)"
        answer = (end - start).days
    else:
        days = (end - start).days + 1
        weeks, extra = divmod(days, 7)
        answer = weeks * 5 + sum(1 for i in range(extra) if (start.weekday() + i) % 7 < 5)
        prompt = (f"How many weekdays (Monday to Friday) are there from {_say(start)} to {_say(end)}, "
                  "counting both dates?")
        reference = "\n".join([
            "from datetime import date, timedelta",
            "",
            f"day, last = {_code(start)}, {_code(end)}",
            "count = 0",
            "while day <= last:",
            "    count += day.weekday() < 5",
            "    day += timedelta(days=1)",
            "print(count)",
        ])
    return Problem(prompt, str(answer), reference, f"days_between:{level}:{start}:{end}")


def date_after(rng: random.Random, level: int) -> Problem:
    """The date some days after (or, at level 3, before) a given date."""
    days = {1: rng.randint(1, 90), 2: rng.randint(100, 2000), 3: rng.randint(1000, 20_000)}[level]
    sign = -1 if level == 3 else 1
    start = _random_date(rng, 1960 if level == 3 else 1950, 2099 if level == 3 else 2090)
    result = start + timedelta(days=sign * days)
    direction = "before" if sign < 0 else "after"
    prompt = f"What date is {days} days {direction} {_say(start)}? {DATE_FORMAT_HINT}"
    op = "-" if sign < 0 else "+"
    reference = (f"from datetime import date, timedelta\n\n"
                 f'print(({_code(start)} {op} timedelta(days={days})).strftime("%Y%m%d"))')
    return Problem(prompt, result.strftime("%Y%m%d"), reference, f"date_after:{level}:{start}:{sign * days}",
                   "yyyymmdd")


def weekday(rng: random.Random, level: int) -> Problem:
    """Days of the week (ISO numbers), and counting Friday the 13ths."""
    if level == 1:
        day = _random_date(rng, 1900, 2099)
        prompt = f"On which day of the week is {_say(day)}? {WEEKDAY_HINT}"
        reference = f"from datetime import date\n\nprint({_code(day)}.isoweekday())"
        return Problem(prompt, str(day.isoweekday()), reference, f"weekday:1:{day}", "iso_weekday")
    if level == 2:
        day, days = _random_date(rng, 1900, 2080), rng.randint(10, 5000)
        prompt = (f"{_say(day)} is a {WEEKDAYS[day.weekday()]}. Which day of the week is {days} days later? "
                  f"{WEEKDAY_HINT}")
        reference = (f"from datetime import date, timedelta\n\n"
                     f"print(({_code(day)} + timedelta(days={days})).isoweekday())")
        answer = (day + timedelta(days=days)).isoweekday()
        return Problem(prompt, str(answer), reference, f"weekday:2:{day}:{days}", "iso_weekday")
    first = rng.randint(1900, 2080)
    last = first + rng.randint(0, 19)
    answer = sum(date(y, m, 13).weekday() == 4 for y in range(first, last + 1) for m in range(1, 13))
    prompt = (f"How many months from January {first} to December {last} have their 13th day on a Friday?")
    reference = (f"from datetime import date\n\n"
                 f"print(sum(date(y, m, 13).weekday() == 4 for y in range({first}, {last + 1}) for m in range(1, 13)))")
    return Problem(prompt, str(answer), reference, f"weekday:3:{first}:{last}")


def ages(rng: random.Random, level: int) -> Problem:
    """Ages in completed years and months, and when one sibling is twice as old as another.

    Birthdays fall on day 1-28, so 'completed months' and leap days are never ambiguous.
    """
    born = _random_date(rng, 1900, 2040, max_day=28)
    if level == 1:
        on = born + timedelta(days=rng.randint(365, 36_500))
        answer = on.year - born.year - ((on.month, on.day) < (born.month, born.day))
        prompt = f"Someone was born on {_say(born)}. How old are they, in completed years, on {_say(on)}?"
        reference = (f"from datetime import date\n\nborn, on = {_code(born)}, {_code(on)}\n"
                     "print(on.year - born.year - ((on.month, on.day) < (born.month, born.day)))")
        return Problem(prompt, str(answer), reference, f"ages:1:{born}:{on}")
    if level == 2:
        on = born + timedelta(days=rng.randint(40, 3000))
        answer = (on.year - born.year) * 12 + on.month - born.month - (on.day < born.day)
        prompt = f"A baby was born on {_say(born)}. How many full months old is the child on {_say(on)}?"
        reference = (f"from datetime import date\n\nborn, on = {_code(born)}, {_code(on)}\n"
                     "print((on.year - born.year) * 12 + on.month - born.month - (on.day < born.day))")
        return Problem(prompt, str(answer), reference, f"ages:2:{born}:{on}")
    while True:
        younger = born + timedelta(days=rng.randint(100, 5000))
        when = younger + (younger - born)
        if when.year <= 2099:
            break
        born = _random_date(rng, 1900, 2040, max_day=28)
    prompt = (f"An older sibling was born on {_say(born)} and a younger one on {_say(younger)}. Counting age in "
              "days (a baby is 0 days old on the day it is born), on which date is the older sibling exactly twice "
              f"as old as the younger one? {DATE_FORMAT_HINT}")
    reference = (f"from datetime import date\n\nolder, younger = {_code(born)}, {_code(younger)}\n"
                 "# older age = 2 * younger age  <=>  day - older = 2 * (day - younger)\n"
                 'print((younger + (younger - older)).strftime("%Y%m%d"))')
    return Problem(prompt, when.strftime("%Y%m%d"), reference, f"ages:3:{born}:{younger}", "yyyymmdd")


FAMILIES: tuple[Family, ...] = (
    Family("shopping_change", "arithmetic", ("decimal2",), shopping_change),
    Family("compound_interest", "arithmetic", ("decimal2",), compound_interest),
    Family("missing_average", "arithmetic", ("integer",), missing_average),
    Family("committee", "combinatorics", ("integer",), committee),
    Family("letter_arrangements", "combinatorics", ("integer",), letter_arrangements),
    Family("dice_sums", "combinatorics", ("integer",), dice_sums),
    Family("candy_distribution", "combinatorics", ("integer",), candy_distribution),
    Family("gcd_lcm", "number_theory", ("integer",), gcd_lcm),
    Family("modular_power", "number_theory", ("integer",), modular_power),
    Family("divisors", "number_theory", ("integer",), divisors),
    Family("divisible_count", "number_theory", ("integer",), divisible_count),
    Family("primes", "number_theory", ("integer",), primes),
    Family("days_between", "dates", ("integer",), days_between),
    Family("date_after", "dates", ("yyyymmdd",), date_after),
    Family("weekday", "dates", ("iso_weekday", "integer"), weekday),
    Family("ages", "dates", ("integer", "yyyymmdd"), ages),
)


# --------------------------------------------------------------------------------------------
# Generation


def task_id(split: Split, n: int, seed: int = 0) -> str:
    """``math/<split>/<n>``; another seed gets its own ids so resumed runs never mix seeds."""
    return f"math/{split}/{n}" if seed == 0 else f"math/{split}/seed{seed}/{n}"


def _draw(family: Family, level: int, split: Split, instance_seed: int, seen: set[str]) -> Problem:
    """The first draw for this instance that belongs to ``split`` and is new in it."""
    for attempt in range(MAX_ATTEMPTS):
        problem = family.make(random.Random(f"{instance_seed}:{attempt}"), level)
        if in_heldout(problem.key) == (split == "heldout") and problem.key not in seen:
            return problem
    raise RuntimeError(f"math family {family.name} (level {level}) ran out of new {split} problems "
                       f"after {MAX_ATTEMPTS} draws; ask for fewer problems")


def generate_math_tasks(split: Split, count: int, *, seed: int = 0) -> list[Task]:
    """``count`` problems of one split, cycling through the families and then the difficulty levels,
    so any prefix covers every family and, once longer than len(FAMILIES), every level.

    Instance n draws from seed n (train) or 10**6 + n (heldout), shifted by ``seed``; the output
    is the same on every run and machine, and a longer list extends a shorter one.
    """
    if split not in ("train", "heldout"):
        raise ValueError(f"unknown math split {split!r}; choose train or heldout")
    offset = HELDOUT_SEED_OFFSET if split == "heldout" else 0
    tasks, seen = [], set()
    for n in range(count):
        family = FAMILIES[n % len(FAMILIES)]
        level = 1 + (n // len(FAMILIES)) % 3
        problem = _draw(family, level, split, seed * 10**7 + offset + n, seen)
        seen.add(problem.key)
        tasks.append(Task(
            id=task_id(split, n, seed), kind="math", prompt=problem.prompt, answer=problem.answer,
            reference=problem.reference,
            meta={"source": "math-generated", "split": split, "family": family.name, "topic": family.topic,
                  "difficulty": level, "answer_format": problem.answer_format, "key": problem.key},
        ))
    return tasks
