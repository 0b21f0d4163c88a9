#!/usr/bin/env python3
"""Checks of tools/usefulness.py's splits and preprocessing.

    /tmp/uvenv/bin/python -m unittest tools/test_usefulness.py

from the repository root (needs the packages of tools/requirements-usefulness.txt).
"""

import os
import sys
import tempfile
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import usefulness as u  # noqa: E402


def table_from(text):
    f = tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False)
    f.write(text)
    f.close()
    try:
        return u.Table(f.name)
    finally:
        os.remove(f.name)


class Splits(unittest.TestCase):
    def test_rules(self):
        job, train, holdout, test = u.split_rows(12, 5, 3)
        self.assertEqual(test, [4, 9])
        self.assertEqual(job, [0, 1, 2, 3, 5, 6, 7, 8, 10, 11])
        # job positions 2, 5, 8 are the chain's holdout rows
        self.assertEqual(holdout, [2, 6, 10])
        self.assertEqual(train, [0, 1, 3, 5, 7, 8, 11])

    def test_job_csv_is_header_and_job_rows(self):
        t = table_from("a,b\n" + "".join(f"{i},x{i}\n" for i in range(10)))
        job, _, _, _ = u.split_rows(10, 5, 5)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "job.csv")
            u.write_job_csv(t, job, path)
            with open(path) as f:
                lines = f.read().splitlines()
        self.assertEqual(lines[0], "a,b")
        self.assertEqual(lines[1:], [f"{i},x{i}" for i in job])


class Preprocessing(unittest.TestCase):
    def test_numbers_and_text(self):
        t = table_from("n,c,y\n1,b,10\n2e0,a,20\n+3.,b,30\n.5,z,40\n")
        self.assertEqual(t.text, [False, True, False])
        p = u.Preprocessor(t, "y", [0, 1, 2])
        self.assertEqual(p.feature_names, ["n", "c=a", "c=b"])
        x, y_s, y = p.transform([0, 1, 2, 3])
        raw = np.array([[1, 0, 1], [2, 1, 0], [3, 0, 1], [0.5, 0, 0]], float)
        mean = raw[:3].mean(axis=0)
        std = raw[:3].std(axis=0)  # population std
        np.testing.assert_allclose(x, (raw - mean) / std)
        # unseen "z": both indicators 0 before standardising
        np.testing.assert_allclose(y, [10, 20, 30, 40])
        np.testing.assert_allclose(y_s, (y - 20) / np.std([10, 20, 30]))

    def test_constant_column_has_std_one(self):
        t = table_from("k,y\n7,1\n7,2\n7,3\n")
        p = u.Preprocessor(t, "y", [0, 1, 2])
        self.assertEqual(p.x_std[0], 1.0)
        x, _, _ = p.transform([0])
        self.assertEqual(x[0, 0], 0.0)

    def test_rust_number_grammar(self):
        for cell in ["1", "-1.5", "+.5", "1.", "1e5", "2E-3"]:
            self.assertTrue(u._NUMBER.match(cell), cell)
        for cell in ["1_000", "0x10", "1,5", "e5", ".", "Ideal"]:
            self.assertFalse(u._NUMBER.match(cell), cell)

    def test_matches_scikit_learn_pipeline(self):
        from sklearn.linear_model import LinearRegression
        from sklearn.preprocessing import OneHotEncoder

        t = u.Table(os.path.join(u.REPO, "data", "diamonds.csv"))
        _, train, _, test = u.split_rows(len(t.rows), 5, 5)
        p = u.Preprocessor(t, "price", train)
        x_train, y_train, _ = p.transform(train)
        x_test, _, y_test = p.transform(test)

        text = [j for j, is_text in enumerate(t.text) if is_text]
        nums = [j for j, is_text in enumerate(t.text) if not is_text and t.columns[j] != "price"]

        def split(rows):
            a = np.array([[float(t.rows[r][j]) for j in nums] for r in rows])
            b = [[t.rows[r][j] for j in text] for r in rows]
            return a, b

        a_train, b_train = split(train)
        a_test, b_test = split(test)
        enc = OneHotEncoder(handle_unknown="ignore", sparse_output=False).fit(b_train)
        ref_train = np.hstack([a_train, enc.transform(b_train)])
        ref_test = np.hstack([a_test, enc.transform(b_test)])
        y_ref = np.array([float(t.rows[r][t.columns.index("price")]) for r in train])
        pred = LinearRegression().fit(ref_train, y_ref).predict(ref_test)
        ours = p.unscale(LinearRegression().fit(x_train, y_train).predict(x_test))
        self.assertAlmostEqual(u.r2(y_test, ours), u.r2(y_test, pred), places=9)


if __name__ == "__main__":
    unittest.main()
