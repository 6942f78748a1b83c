#!/usr/bin/env python3
"""Self-tests of check_includes.py and check_citations.py: each rule is shown
to fail on a small tree with one deliberate mistake, and a clean tree passes.
"""
import os
import subprocess
import sys
import tempfile
import textwrap
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
INCLUDES = os.path.join(HERE, "check_includes.py")
CITATIONS = os.path.join(HERE, "check_citations.py")

ARCHITECTURE = textwrap.dedent("""\
    # x

    ## Module dependencies

    ```modules
    base:
    crypto: base
    cbor: base
    cose: cbor crypto
    devices: base
    devices/virtio: devices
    ```

    ## Boot path
    """)
FORMATS = "# f\n\n## §4 Attestation document\n\n## §10 Exit\n"
PLATFORMS = "# p\n\n## §V Boot\n\n#### §V1.6 KVM\n"


class Tree:
    def __init__(self, files):
        self.directory = tempfile.TemporaryDirectory()
        self.root = self.directory.name
        base = {
            "docs/ARCHITECTURE.md": ARCHITECTURE,
            "docs/FORMATS.md": FORMATS,
            "docs/PLATFORMS.md": PLATFORMS,
            "include/qtbox/base/error.hpp": "#pragma once\n",
            "include/qtbox/crypto/hash.hpp": "#pragma once\n#include <qtbox/base/error.hpp>\n",
            "include/qtbox/cbor/value.hpp": "#pragma once\n",
            "include/qtbox/cose/sign1.hpp": "#pragma once\n#include <qtbox/cbor/value.hpp>\n#include <qtbox/crypto/hash.hpp>\n",
            "include/qtbox/devices/bus.hpp": "#pragma once\n",
            "include/qtbox/devices/virtio/queue.hpp": "#pragma once\n#include <qtbox/devices/bus.hpp>\n",
            "src/cbor/float16.hpp": "#pragma once\n",
            "src/cbor/decoder.cpp": '#include "float16.hpp"\n#include <qtbox/cbor/value.hpp>\n',
            "src/cose/sign1.cpp": "#include <qtbox/cose/sign1.hpp>\n#include <qtbox/base/error.hpp>\n",
            "src/devices/virtio/queue.cpp": "#include <qtbox/devices/virtio/queue.hpp>\n",
            "tests/cbor/test_float.cpp": '#include "../../src/cbor/float16.hpp"\n#include "../support/child.hpp"\n',
            "tests/support/child.hpp": "#pragma once\n",
            "applets/main.cpp": '#include "applet_table.inc"\n#include <qtbox/cose/sign1.hpp>\n',
        }
        base.update(files)
        for name, text in base.items():
            if text is None:
                continue
            path = os.path.join(self.root, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)

    def run(self, script):
        result = subprocess.run([sys.executable, script, self.root], capture_output=True, text=True)
        return result.returncode, result.stdout


class IncludeRules(unittest.TestCase):
    def check(self, files):
        tree = Tree(files)
        return tree.run(INCLUDES)

    def test_a_clean_tree_passes(self):
        self.assertEqual(self.check({}), (0, ""))

    def test_an_include_against_the_graph_fails(self):
        code, out = self.check({"src/crypto/hash.cpp": "#include <qtbox/cose/sign1.hpp>\n"})
        self.assertEqual(code, 1)
        self.assertEqual(out, "src/crypto/hash.cpp:1: #include <qtbox/cose/sign1.hpp>: module crypto may not include "
                              "module cose (see the graph in docs/ARCHITECTURE.md)\n")

    def test_a_transitive_dependency_is_allowed_and_a_sibling_is_not(self):
        self.assertEqual(self.check({"src/cose/x.cpp": "#include <qtbox/base/error.hpp>\n"})[0], 0)
        code, out = self.check({"src/devices/virtio/x.cpp": "#include <qtbox/cbor/value.hpp>\n"})
        self.assertEqual(code, 1)
        self.assertIn("module devices/virtio may not include module cbor", out)
        code, out = self.check({"src/devices/bus.cpp": "#include <qtbox/devices/virtio/queue.hpp>\n"})
        self.assertEqual(code, 1)
        self.assertIn("module devices may not include module devices/virtio", out)

    def test_another_modules_private_header_fails(self):
        code, out = self.check({"src/cose/x.cpp": '#include "../cbor/float16.hpp"\n'})
        self.assertEqual(code, 1)
        self.assertIn("private header of module cbor, included from module cose", out)
        code, out = self.check({"tests/cose/test_x.cpp": '#include "../../src/cbor/float16.hpp"\n'})
        self.assertEqual(code, 1)
        self.assertIn("only tests/cbor/ may use it", out)

    def test_src_on_the_include_path_is_refused(self):
        code, out = self.check({"src/cose/x.cpp": '#include "cbor/float16.hpp"\n'})
        self.assertEqual(code, 1)
        self.assertIn("does not resolve next to the including file", out)

    def test_a_suite_reaching_into_another_suites_folder_fails(self):
        code, out = self.check({
            "tests/image/tar_builder.hpp": "#pragma once\n",
            "tests/eif/test_x.cpp": '#include "../image/tar_builder.hpp"\n',
            "fuzz/seeds.cpp": '#include "../tests/image/tar_builder.hpp"\n',
        })
        self.assertEqual(code, 1)
        self.assertIn("tests/eif/test_x.cpp:1", out)
        self.assertIn("fuzz/seeds.cpp:1", out)

    def test_library_code_never_includes_applets(self):
        code, out = self.check({"applets/support/log.hpp": "#pragma once\n",
                                "src/cbor/x.cpp": '#include "../../applets/support/log.hpp"\n'})
        self.assertEqual(code, 1)
        self.assertIn("src/ never includes applets/", out)
        code, _ = self.check({"applets/support/log.hpp": "#pragma once\n",
                              "tests/cbor/tool.cpp": '#include "../../applets/support/log.hpp"\n'})
        self.assertEqual(code, 0)

    def test_a_file_outside_every_module_and_an_unknown_header_fail(self):
        code, out = self.check({"src/main.cpp": "int main() {}\n",
                                "src/cbor/y.cpp": "#include <qtbox/cbor/missing.hpp>\n"})
        self.assertEqual(code, 1)
        self.assertIn("src/main.cpp: not inside a module directory", out)
        self.assertIn("no such public header", out)

    def test_a_cycle_in_the_graph_fails(self):
        code, _ = self.check({"docs/ARCHITECTURE.md": ARCHITECTURE.replace("crypto: base", "crypto: cose")})
        self.assertEqual(code, 1)


class CitationRules(unittest.TestCase):
    def check(self, text):
        tree = Tree({"src/cbor/cited.cpp": text})
        return tree.run(CITATIONS)

    def test_resolving_citations_pass(self):
        code, out = self.check('// docs/FORMATS.md §4 and §10; docs/PLATFORMS.md §V1.6;\n'
                               '// docs/ARCHITECTURE.md "Boot path"\n')
        self.assertEqual((code, out), (0, ""))

    def test_a_citation_split_over_two_comment_lines_is_read_whole(self):
        self.assertEqual(self.check('// see docs/FORMATS.md\n// §4 for the order\n')[0], 0)
        self.assertEqual(self.check('// see docs/FORMATS.md\n// §5 for the order\n')[0], 1)

    def test_a_missing_section_fails(self):
        code, out = self.check("// docs/FORMATS.md §4, §12\n")
        self.assertEqual(code, 1)
        self.assertEqual(out, "src/cbor/cited.cpp: cites FORMATS.md §12, which docs/FORMATS.md has no heading for\n")
        code, out = self.check('// docs/ARCHITECTURE.md "Nowhere"\n')
        self.assertEqual(code, 1)

    def test_documents_outside_the_repo_fail(self):
        for text in ("// SPEC" " §4\n", "// DESIGN" ".md\n", "// ../reference" "/vmm" ".md §1\n"):
            code, out = self.check(text)
            self.assertEqual(code, 1, text)
            self.assertIn("a document outside the repo", out)


if __name__ == "__main__":
    unittest.main(verbosity=1)
