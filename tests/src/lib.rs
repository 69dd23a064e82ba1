//! franzy-tests: fixtures shared by the end-to-end tests.
