"""The api's tests, run by its image's build against the index the build just made: an image
whose search is broken is never tagged, so never deployed."""

import sqlite3
import sys
import unittest

from api import DATABASE, search


class SearchTest(unittest.TestCase):
    def setUp(self):
        self.db = sqlite3.connect(f"file:{DATABASE}?mode=ro", uri=True)
        self.addCleanup(self.db.close)

    def test_finds_a_function_by_its_name(self):
        found = search("urlopen", self.db)
        self.assertEqual((found[0]["module"], found[0]["qualname"]), ("urllib.request", "urlopen"))

    def test_finds_methods_by_the_start_of_a_word(self):
        found = {(row["module"], row["qualname"]) for row in search("OrderedDict.move", self.db)}
        self.assertIn(("collections", "OrderedDict.move_to_end"), found)

    def test_every_word_must_match(self):
        for row in search("parse url", self.db):
            text = " ".join((row["qualname"], row["summary"])).lower()
            self.assertIn("pars", text)
            self.assertIn("url", text)

    def test_finds_code_by_what_it_calls(self):
        found = search("copyfileobj", self.db, code=True)
        self.assertIn(("shutil", "copyfile"), {(row["module"], row["qualname"]) for row in found})
        self.assertTrue(all(row["line"] > 0 for row in found))

    def test_every_symbol_comes_first_when_asked_by_its_qualified_name(self):
        """The whole index, symbol by symbol: what a user types is what comes first."""
        wrong = []
        for module, qualname in self.db.execute("SELECT module, qualname FROM symbols"):
            first = search(qualname, self.db)[0]
            if first["qualname"].lower() != qualname.lower():
                wrong.append(f"{module}.{qualname}: {first['module']}.{first['qualname']} first")
        self.assertEqual(wrong, [])

    def test_code_search_puts_each_function_first_when_asked_by_its_name(self):
        """Every function's definition is in its source, found by code search before its callers."""
        wrong = []
        for module, name in self.db.execute("SELECT module, name FROM symbols WHERE kind = 'function'"):
            first = search(name, self.db, code=True)[0]
            if first["name"].lower() != name.lower():
                wrong.append(f"{module}.{name}: {first['module']}.{first['qualname']} first")
        self.assertEqual(wrong, [])

    def test_no_words_no_results(self):
        self.assertEqual(search(" ?! ", self.db), [])

    def test_the_index_covers_the_standard_library(self):
        modules = {row[0] for row in self.db.execute("SELECT DISTINCT module FROM symbols")}
        self.assertTrue({"json", "pathlib", "http.server", "asyncio.tasks", "email.message"} <= modules)


if __name__ == "__main__":
    unittest.main(testRunner=unittest.TextTestRunner(stream=sys.stdout))
