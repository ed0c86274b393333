/* empty.c - placeholder translation unit for a module without sources. */
typedef int torii_empty_translation_unit;
