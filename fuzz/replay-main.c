/* Without libFuzzer, each fuzz target is linked with this file: it replays every file
 * given on the command line (or every file of the directories given) through
 * LLVMFuzzerTestOneInput, so `meson test` re-runs the corpus and every crash input ever
 * committed, under the sanitizers in the ASan build. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path) {
        FILE *f = fopen(path, "rb");
        uint8_t *buf;
        long len;

        if (!f)
                return -1;
        if (fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
                fclose(f);
                return -1;
        }
        buf = malloc((size_t) len + 1);
        if (!buf || fread(buf, 1, (size_t) len, f) != (size_t) len) {
                free(buf);
                fclose(f);
                return -1;
        }
        fclose(f);
        (void) LLVMFuzzerTestOneInput(buf, (size_t) len);
        free(buf);
        return 0;
}

int main(int argc, char **argv) {
        size_t n = 0;

        for (int i = 1; i < argc; i++) {
                struct stat st;
                if (stat(argv[i], &st) < 0) {
                        fprintf(stderr, "replay: %s: not found\n", argv[i]);
                        return 1;
                }
                if (!S_ISDIR(st.st_mode)) {
                        if (replay_file(argv[i]) < 0)
                                return 1;
                        n++;
                        continue;
                }
                DIR *d = opendir(argv[i]);
                struct dirent *e;
                if (!d)
                        return 1;
                while ((e = readdir(d))) {
                        char path[4096];
                        if (e->d_name[0] == '.')
                                continue;
                        (void) snprintf(path, sizeof(path), "%s/%s", argv[i], e->d_name);
                        if (replay_file(path) < 0) {
                                closedir(d);
                                fprintf(stderr, "replay: cannot read %s\n", path);
                                return 1;
                        }
                        n++;
                }
                closedir(d);
        }
        if (n == 0) {
                fprintf(stderr, "replay: empty corpus\n");
                return 1;
        }
        printf("replayed %zu inputs\n", n);
        return 0;
}
