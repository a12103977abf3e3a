// tapwire-pktgen: arrives in the next commit.
int main() {
    return 0;
}
